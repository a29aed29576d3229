"""The Redis fixtures of test_redis (the machine's server, a server of the test's own), the
broker prefix of test_rabbitmq and the SMTP sink of the mailer's tests, for every integration
test."""

from tests.integration.test_rabbitmq import prefix  # noqa: F401
from tests.integration.test_redis import own_redis, redis_url  # noqa: F401
from tests.notifications.test_mailer import smtp_sink  # noqa: F401
