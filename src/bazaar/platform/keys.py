"""The keys of access tokens: identity's private key, everyone's public keys, the JWKS document.

Only a process that runs identity loads the private key (`BAZAAR_JWT_PRIVATE_KEY`, or the
file under the data folder); every other process verifies with public keys alone
(`BAZAAR_JWT_PUBLIC_KEYS`, or the `.pub.pem` file beside the private one). Each key is known
by its RFC 7638 thumbprint, the `kid` in a token's header and in the JWKS document, so that
two keys can be valid at once while the signing key is rotated.
"""

import base64
import hashlib
import json
import os
import re
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

KEY_FILE = "jwt-ed25519.pem"
PUBLIC_KEY_FILE = "jwt-ed25519.pub.pem"

_PEM_BLOCK = re.compile(r"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.DOTALL)


def parse_private_key(pem: str) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the token-signing key must be an Ed25519 private key")
    return key


def parse_public_keys(pem: str) -> list[Ed25519PublicKey]:
    """Every `PUBLIC KEY` block of `pem`, in order; ValueError when there is none or one is
    not an Ed25519 key."""
    keys = []
    for block in _PEM_BLOCK.findall(pem):
        key = serialization.load_pem_public_key(block.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("every token-verifying key must be an Ed25519 public key")
        keys.append(key)
    if not keys:
        raise ValueError("no PEM 'PUBLIC KEY' block found")
    return keys


def public_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _x(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return _b64url(raw)


def key_id(key: Ed25519PublicKey) -> str:
    """The key's JWK thumbprint (RFC 7638): the same for the same key, wherever computed."""
    members = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": _x(key)}, separators=(",", ":"))
    return _b64url(hashlib.sha256(members.encode()).digest())


def jwks(keys: list[Ed25519PublicKey]) -> dict[str, list[dict[str, str]]]:
    """The JWKS document (RFC 7517, OKP keys of RFC 8037) of `keys`."""
    return {
        "keys": [
            {
                "kty": "OKP",
                "crv": "Ed25519",
                "x": _x(key),
                "kid": key_id(key),
                "use": "sig",
                "alg": "EdDSA",
            }
            for key in keys
        ]
    }


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The signing key kept under the data directory, created on first use, with its public
    key written beside it (`PUBLIC_KEY_FILE`) for the processes that only verify.

    Processes that start together on a new data directory agree on one key: each writes its
    candidate to a file of its own and links it into place, which only the first one does;
    the others then read the winner's.
    """
    if not path.exists():
        candidate = Ed25519PrivateKey.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = candidate.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_once(path, pem, 0o600)
    key = parse_private_key(path.read_text())
    public = path.with_name(PUBLIC_KEY_FILE)
    if not public.exists():
        _write_once(public, public_pem(key.public_key()).encode(), 0o644)
    return key


def _write_once(path: Path, content: bytes, mode: int) -> None:
    """Write `path` unless another process wrote it first; never a half-written file."""
    temporary = path.with_suffix(f".{os.getpid()}.{secrets.token_hex(4)}.tmp")
    temporary.write_bytes(content)
    temporary.chmod(mode)
    try:
        os.link(temporary, path)  # fails if another process linked its file first
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
