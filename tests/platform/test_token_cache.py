"""A verified access token is remembered until it expires, and no longer."""

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bazaar.platform import auth
from bazaar.platform.auth import CUSTOMER, Principal, TokenIssuer, TokenVerifier
from bazaar.platform.errors import Unauthorized


def issuer_and_verifier() -> tuple[TokenIssuer, TokenVerifier]:
    key = Ed25519PrivateKey.generate()
    return TokenIssuer(key, ttl_seconds=60), TokenVerifier([key.public_key()])


def test_a_remembered_token_is_refused_once_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    issuer, verifier = issuer_and_verifier()
    token = issuer.issue("user-1", CUSTOMER)
    assert verifier.verify(token) == Principal("user-1", CUSTOMER)
    assert verifier.verify(token) == Principal("user-1", CUSTOMER)  # remembered

    later = auth.time.time() + 61
    monkeypatch.setattr(auth.time, "time", lambda: later)
    with pytest.raises(Unauthorized, match="expired"):
        verifier.verify(token)


def test_a_tampered_token_is_refused_even_beside_a_remembered_one() -> None:
    issuer, verifier = issuer_and_verifier()
    token = issuer.issue("user-1", CUSTOMER)
    verifier.verify(token)
    header, payload, signature = token.split(".")
    forged = f"{header}.{payload}.{signature[:-4]}AAAA"
    with pytest.raises(Unauthorized):
        verifier.verify(forged)


def test_the_remembered_tokens_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "VERIFIED_TOKENS", 3)
    issuer, verifier = issuer_and_verifier()
    tokens = [issuer.issue(f"user-{n}", CUSTOMER) for n in range(5)]
    for token in tokens:
        verifier.verify(token)
    assert len(verifier._verified) == 3
    assert list(verifier._verified) == tokens[2:]  # the oldest went first
    assert verifier.verify(tokens[0]) == Principal("user-0", CUSTOMER)  # verified again
