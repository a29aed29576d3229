"""Signed-in customers for the journeys, made before a measurement starts: signing up is an
argon2 hash and signing in a verification, both made slow on purpose, so a crowd of simulated
users all signing up in the first second would measure the sign-up, not the journey (and a
real storefront's customers are mostly signed up already).

Each customer is signed up once per mode and signed in again before each measurement (access
tokens live 15 minutes); the journeys read `email password token` lines (BENCH_CUSTOMERS).
"""

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

PASSWORD = "bench-password-1"
ATTEMPTS = 20


def _post(client: httpx.Client, path: str, body: dict, accept: tuple[int, ...]) -> httpx.Response:
    """POST, waiting as `Retry-After` says while the service is busy (503, 429)."""
    for _ in range(ATTEMPTS):
        answer = client.post(path, json=body)
        if answer.status_code in accept:
            return answer
        if answer.status_code not in (429, 503):
            answer.raise_for_status()
        time.sleep(min(float(answer.headers.get("retry-after", "1")), 5.0))
    raise RuntimeError(f"{path} still busy after {ATTEMPTS} attempts")


@dataclass
class Customers:
    url: str
    folder: Path
    emails: list[str] = field(default_factory=list)

    def signed_in(self, count: int) -> Path:
        """A file of `count` customers with fresh access tokens (signing up any missing)."""
        with httpx.Client(base_url=self.url, timeout=30) as client:

            def sign_up(_number: int) -> str:
                email = f"bench-{uuid.uuid4().hex[:16]}@example.com"
                body = {"email": email, "password": PASSWORD, "name": "Bench Shopper"}
                _post(client, "/v1/auth/register", body, (201,))
                return email

            def sign_in(email: str) -> str:
                body = {"email": email, "password": PASSWORD}
                token = _post(client, "/v1/auth/login", body, (200,)).json()["access_token"]
                return f"{email} {PASSWORD} {token}"

            with ThreadPoolExecutor(4) as pool:  # as many as identity answers without a queue
                missing = count - len(self.emails)
                self.emails += list(pool.map(sign_up, range(max(0, missing))))
                lines = list(pool.map(sign_in, self.emails[:count]))
        path = self.folder / "customers.txt"
        path.write_text("\n".join(lines) + "\n")
        return path
