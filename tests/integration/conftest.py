"""The Redis fixtures of test_redis (the machine's server, a server of the test's own) for every
integration test."""

from tests.integration.test_redis import own_redis, redis_url  # noqa: F401
