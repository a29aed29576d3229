"""Only identity holds the token-signing key; every other process verifies with public keys,
published as a JWKS document; two keys are valid at once while the signing key is rotated."""

import base64
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bazaar.platform.auth import CUSTOMER, TokenIssuer, TokenVerifier
from bazaar.platform.errors import Unauthorized
from bazaar.platform.keys import KEY_FILE, PUBLIC_KEY_FILE, key_id, load_or_create_key, public_pem
from bazaar.platform.settings import SettingsError
from bazaar.runtime.config import ProcessKind, Settings
from bazaar.runtime.embedded import Runtime
from bazaar.runtime.processes import SERVICES
from tests.plugin import FAST_ENV, login, register


def private_pem(key: Ed25519PrivateKey) -> str:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def settings(data: Path, kind: ProcessKind = ProcessKind.SERVE, **extra: str) -> Settings:
    return Settings.from_env({**FAST_ENV, "BAZAAR_DATA_DIR": str(data), **extra}, kind=kind)


async def test_the_jwks_document_names_the_key_that_signed_a_token(
    client: httpx.AsyncClient,
) -> None:
    await register(client)
    token = (await login(client))["access_token"]
    answer = await client.get("/.well-known/jwks.json")
    assert answer.status_code == 200
    assert "max-age" in answer.headers["cache-control"]
    [published] = answer.json()["keys"]
    assert (published["kty"], published["crv"], published["alg"]) == ("OKP", "Ed25519", "EdDSA")
    assert jwt.get_unverified_header(token)["kid"] == published["kid"]
    raw = base64.urlsafe_b64decode(published["x"] + "=" * (-len(published["x"]) % 4))
    claims = jwt.decode(
        token, Ed25519PublicKey.from_public_bytes(raw), algorithms=["EdDSA"], issuer="bazaar"
    )
    assert claims["role"] == CUSTOMER


@pytest.mark.parametrize("kind", [ProcessKind.SERVE, ProcessKind.WORKER])
@pytest.mark.parametrize("service", [s for s in SERVICES if s != "identity"])
def test_no_process_but_identitys_holds_the_signing_key(
    tmp_path: Path, kind: ProcessKind, service: str
) -> None:
    identity_key = load_or_create_key(tmp_path / KEY_FILE)  # as `bazaar migrate` makes it
    (tmp_path / KEY_FILE).unlink()  # a verifier never needs it: only the public key is left
    extra = {"BAZAAR_CATALOG_URL": "http://127.0.0.1:9"} if service == "orders" else {}
    runtime = Runtime(settings(tmp_path, kind, **extra), services=[service])
    assert runtime.platform.signing_key is None
    assert all(part.name != "identity" for part in runtime.parts)
    token = TokenIssuer(identity_key, 60).issue("user-1", CUSTOMER)
    assert runtime.platform.verifier.verify(token).id == "user-1"
    forged = TokenIssuer(Ed25519PrivateKey.generate(), 60).issue("user-1", "admin")
    with pytest.raises(Unauthorized):
        runtime.platform.verifier.verify(forged)


def test_identitys_processes_sign_and_a_verifier_needs_public_keys(tmp_path: Path) -> None:
    for kind in (ProcessKind.SERVE, ProcessKind.WORKER):
        runtime = Runtime(settings(tmp_path / "a", kind), services=["identity"])
        assert runtime.platform.signing_key is not None
    assert (tmp_path / "a" / PUBLIC_KEY_FILE).exists()
    with pytest.raises(SettingsError) as refused:
        Runtime(settings(tmp_path / "empty"), services=["catalog"])
    assert refused.value.variable == "BAZAAR_JWT_PUBLIC_KEYS"
    # a private key in the environment is no help to a verifier: it is never read there
    key = private_pem(Ed25519PrivateKey.generate())
    with pytest.raises(SettingsError):
        Runtime(settings(tmp_path / "empty", BAZAAR_JWT_PRIVATE_KEY=key), services=["catalog"])


def test_a_rotation_keeps_the_old_keys_tokens_valid_until_its_key_is_dropped(
    tmp_path: Path,
) -> None:
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    issued_before = TokenIssuer(old, 600).issue("user-1", CUSTOMER)
    both = public_pem(old.public_key()) + public_pem(new.public_key())
    # identity now signs with the new key; every process still accepts the old one's tokens
    signer = Runtime(
        settings(tmp_path, BAZAAR_JWT_PRIVATE_KEY=private_pem(new), BAZAAR_JWT_PUBLIC_KEYS=both),
        services=["identity"],
    )
    verifier = Runtime(settings(tmp_path, BAZAAR_JWT_PUBLIC_KEYS=both), services=["payments"])
    assert [key_id(k) for k in signer.platform.public_keys] == [
        key_id(new.public_key()),
        key_id(old.public_key()),
    ]
    issued_after = TokenIssuer(new, 600).issue("user-2", CUSTOMER)
    for platform in (signer.platform, verifier.platform):
        assert platform.verifier.verify(issued_before).id == "user-1"
        assert platform.verifier.verify(issued_after).id == "user-2"
    # once the old key is dropped, its tokens are refused
    after = TokenVerifier([new.public_key()])
    with pytest.raises(Unauthorized):
        after.verify(issued_before)
    assert after.verify(issued_after).id == "user-2"
