"""Identity's settings."""

from dataclasses import dataclass

from bazaar.platform.settings import Env


@dataclass(frozen=True)
class IdentitySettings:
    access_token_ttl: int
    refresh_token_ttl: int
    login_failures_per_email: str
    login_failures_per_ip: str
    argon2_time_cost: int
    argon2_memory_kib: int

    @classmethod
    def from_env(cls, env: Env) -> "IdentitySettings":
        return cls(
            access_token_ttl=env.integer("ACCESS_TOKEN_TTL", 900, minimum=30),
            refresh_token_ttl=env.integer("REFRESH_TOKEN_TTL", 30 * 24 * 3600, minimum=60),
            login_failures_per_email=env.text("LOGIN_FAILURES_PER_EMAIL", "5/minute"),
            login_failures_per_ip=env.text("LOGIN_FAILURES_PER_IP", "30/minute"),
            argon2_time_cost=env.integer("ARGON2_TIME_COST", 2, minimum=1),
            argon2_memory_kib=env.integer("ARGON2_MEMORY_KIB", 19 * 1024, minimum=8),
        )
