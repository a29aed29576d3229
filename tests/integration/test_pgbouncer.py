"""Bazaar through a real PgBouncer (Debian's, transaction pooling) in front of the machine's
PostgreSQL, configured as `bazaar up --pgbouncer` configures it: concurrent checkouts share a
few server connections without a prepared-statement error, and a row lock still ends after
the lock timeout with a 503."""

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bazaar.platform.postgres import LOCK_TIMEOUT, drop_database
from bazaar.runtime.cluster import pgbouncer
from bazaar.runtime.cluster.budget import ServerPools
from bazaar.runtime.cluster.pgcluster import SERVER_USER
from bazaar.runtime.cluster.topology import free_port
from bazaar.runtime.embedded import Runtime
from tests.e2e.checkout import create_product, place_order, settled, stock_of
from tests.integration.row_locks import patch_while_held
from tests.plugin import admin, customer, settings_for
from tests.postgres import SERVER_URL, fresh_database_url, require_server
from tests.scaled import _unavailable

SERVER_POOL = 3
"""Server connections per database: far fewer than the requests at once, so that PgBouncer
must hand each server connection from client to client, transaction by transaction."""


def _wait_for_port(port: int, process: subprocess.Popen, log: Path, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"pgbouncer exited ({process.returncode}): {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"pgbouncer did not listen on {port} within {within} s: {log.read_text()}")


@pytest.fixture
def bouncer() -> Iterator[pgbouncer.Bouncer]:
    if shutil.which("pgbouncer") is None:
        _unavailable("pgbouncer is not installed (Debian package `pgbouncer`)")
    folder = Path(tempfile.mkdtemp(prefix="bazaar-pgbouncer-"))
    folder.chmod(0o711)  # PgBouncer runs as `postgres` when the tests run as root
    server = make_url(SERVER_URL).set(database="postgres").render_as_string(hide_password=False)
    running = pgbouncer.Bouncer("pgbouncer-test", server, free_port(), folder / "primary")
    pgbouncer.write(running, ServerPools(per_database=SERVER_POOL, limit=30, clients=400))
    command = pgbouncer.program(running).command
    if os.geteuid() == 0:
        command = ["runuser", "-u", SERVER_USER, "--", *command]
    log = folder / "pgbouncer.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_for_port(running.port, process, log)
        yield running
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # its own session: runuser and pgbouncer
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
async def runtime(bouncer: pgbouncer.Bouncer, tmp_path: Path) -> AsyncIterator[Runtime]:
    """Migrated on the server itself (as `bazaar up` does), then run through PgBouncer."""
    await require_server()
    direct_url = fresh_database_url()
    direct = Runtime(settings_for(tmp_path / "data", BAZAAR_DATABASE_URL=direct_url))
    try:
        await direct.migrate()
        await direct.platform.close()  # from here on, only PgBouncer connects
        pooled = pgbouncer.through({"BAZAAR_DATABASE_URL": direct_url}, [bouncer])
        runtime = Runtime(settings_for(tmp_path / "data", **pooled))
        await runtime.start()
        try:
            yield runtime
        finally:
            await runtime.stop()
    finally:
        for db in direct.platform.all_databases():
            await drop_database(db.primary.url)


async def _server_connections(database_prefix: str) -> dict[str, int]:
    url = make_url(SERVER_URL)
    connection = await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username, database="postgres"
    )
    try:
        rows = await connection.fetch(
            "SELECT datname, count(*) AS n FROM pg_stat_activity WHERE datname LIKE $1"
            " GROUP BY datname",
            f"{database_prefix}%",
        )
    finally:
        await connection.close()
    return {row["datname"]: row["n"] for row in rows}


async def test_concurrent_checkouts_share_few_server_connections(
    runtime: Runtime, client: httpx.AsyncClient, bouncer: pgbouncer.Bouncer
) -> None:
    catalog = runtime.platform.databases["catalog"]
    assert catalog.primary.url.port == bouncer.port
    headers = await admin(runtime, client)
    products = [await create_product(client, headers, stock=100) for _ in range(4)]
    buyers = [await customer(client, f"buyer{n}@example.com") for n in range(8)]

    async def shop(buyer: dict[str, str], index: int) -> list[httpx.Response]:
        answers = []
        for turn in range(3):
            product = products[(index + turn) % len(products)]
            answers.append(await client.get(f"/v1/products/{product['id']}"))
            answers.append(await client.get("/v1/products", params={"limit": 20}))
            answers.append(
                await place_order(client, buyer, [{"product_id": product["id"], "quantity": 1}])
            )
        return answers

    async with asyncio.timeout(120):
        rounds = await asyncio.gather(*(shop(b, i) for i, b in enumerate(buyers)))
    answers = [answer for round in rounds for answer in round]
    failed = [(a.status_code, a.text[:300]) for a in answers if a.status_code >= 300]
    assert not failed  # a prepared statement lost between server connections would be a 500
    orders = [a for a in answers if a.request.method == "POST"]
    assert len(orders) == 24
    async with asyncio.timeout(60):
        settled_orders = await asyncio.gather(
            *(settled(client, buyers[n // 3], order.json()["id"]) for n, order in enumerate(orders))
        )
    assert {order["status"] for order in settled_orders} == {"confirmed"}
    assert sum([await stock_of(client, p["id"]) for p in products]) == 4 * 100 - 24

    # the processes' side held more connections than PgBouncer gave any database
    prefix = make_url(runtime.platform.databases["catalog"].primary.url).database
    prefix = prefix.removesuffix("_catalog")
    clients = {
        db.name: db.primary.pool.checkedin()  # type: ignore[attr-defined]
        for db in runtime.platform.all_databases()
    }
    assert max(clients.values()) > SERVER_POOL, clients
    servers = await _server_connections(prefix)
    assert servers and max(servers.values()) <= SERVER_POOL, servers


async def test_a_row_lock_still_ends_after_the_lock_timeout_with_503(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    catalog = runtime.platform.databases["catalog"]
    async with catalog.primary.connect() as connection:
        timeout = (await connection.execute(text("SHOW lock_timeout"))).scalar()
    assert timeout == f"{int(LOCK_TIMEOUT)}s"
    headers = await admin(runtime, client)
    product = await create_product(client, headers, stock=5)
    server = make_url(SERVER_URL).set(database=catalog.primary.url.database)
    # on the server itself, beside PgBouncer
    patched, waited = await patch_while_held(client, headers, product["id"], server)

    assert patched.status_code == 503, patched.text
    assert patched.headers["retry-after"] == "1"
    assert LOCK_TIMEOUT <= waited < LOCK_TIMEOUT + 3
    after = await client.patch(f"/v1/products/{product['id']}", json={"stock": 6}, headers=headers)
    assert after.status_code == 200, after.text
