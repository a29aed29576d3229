"""Identity: users, password hashes (argon2id), refresh-token families; issues access tokens."""

from bazaar.platform.service import ServiceDefinition

DEFINITION = ServiceDefinition(
    name="identity", routes=("/v1/auth", "/v1/users", "/.well-known"), database="identity"
)
