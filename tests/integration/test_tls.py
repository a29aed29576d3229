"""A PostgreSQL that accepts only TLS, as a cloud's managed server may: every connection Bazaar
opens (the engines, the LISTEN connection of the relays, the maintenance connection that
creates databases) keeps the URL's options, libpq's `sslmode=require` spelling included."""

import datetime
import ipaddress
import os
import pwd
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bazaar.runtime.cluster.pgcluster import SERVER_USER, LocalPostgres
from tests.e2e.checkout import eventually
from tests.plugin import customer, started
from tests.replication import own_server


def _self_signed(folder: Path) -> bytes:
    """A certificate for 127.0.0.1 and its key, as the server's; returns the certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    files = {
        "server.crt": certificate.public_bytes(serialization.Encoding.PEM),
        "server.key": key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ),
    }
    for file_name, content in files.items():
        path = folder / file_name
        path.write_bytes(content)
        path.chmod(0o600)
        if os.geteuid() == 0:
            user = pwd.getpwnam(SERVER_USER)
            os.chown(path, user.pw_uid, user.pw_gid)
    return files["server.crt"]


def _tls_only(server: LocalPostgres, folder: Path) -> None:
    """TLS on, with a certificate for 127.0.0.1 kept as `root.crt`, and no other connection."""
    (folder / "root.crt").write_bytes(_self_signed(server.data_dir))
    with (server.data_dir / "postgresql.conf").open("a") as conf:
        conf.write("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
    (server.data_dir / "pg_hba.conf").write_text(
        "hostssl all all 127.0.0.1/32 trust\nhostnossl all all 0.0.0.0/0 reject\n"
    )


@pytest.fixture(scope="module")
def tls_only() -> Iterator[tuple[LocalPostgres, Path]]:
    """A server that refuses every connection without TLS, and its certificate's file."""
    for server in own_server(durable=False, configure=_tls_only):
        yield server, server.data_dir.parent / "root.crt"


@pytest.mark.parametrize("options", ["sslmode=require", "ssl=require", "sslmode=verify-full"])
async def test_every_connection_keeps_tls_to_a_tls_only_server(
    tls_only: tuple[LocalPostgres, Path], tmp_path: Path, options: str
) -> None:
    server, certificate = tls_only
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError):  # no TLS: refused
        await asyncpg.connect(server.url(), ssl=False)
    base = f"bazaar_test_{uuid.uuid4().hex[:12]}"
    if options == "sslmode=verify-full":  # what a managed server's URL says, with its CA
        options += f"&sslrootcert={certificate}"
    url = f"{server.url(base)}?{options}"
    async with started(tmp_path / "data", on_servers=True, BAZAAR_DATABASE_URL=url) as runtime:
        transport = httpx.ASGITransport(app=runtime.app())
        async with httpx.AsyncClient(transport=transport, base_url="http://bazaar.test") as client:
            await customer(client)  # written and read through the engines
        observer = await asyncpg.connect(server.url(), ssl="require")
        try:

            async def listening() -> list:
                return await observer.fetch(
                    "SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)"
                    " WHERE a.datname LIKE $1 AND a.query LIKE 'LISTEN%'",
                    f"{base}%",
                )

            listeners = await eventually(listening)  # the relays' LISTEN connections
            assert all(row["ssl"] for row in listeners)
            plain = await observer.fetchval(
                "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)"
                " WHERE a.datname LIKE $1 AND NOT s.ssl",
                f"{base}%",
            )
            assert plain == 0
        finally:
            await observer.close()
