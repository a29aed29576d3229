"""The probe (platform/probe.py) against the machine's PostgreSQL: one connection kept for
every question, a new one after a failure, and a bounded wait on a server that never answers."""

import asyncio
import time

import asyncpg
import pytest

from bazaar.platform.postgres import server_probe
from tests.postgres import SERVER_URL, require_server


@pytest.fixture
async def server() -> str:
    await require_server()
    return SERVER_URL.rstrip("/") + "/postgres"


async def test_every_question_is_asked_on_the_one_connection(server: str) -> None:
    probe = server_probe(server, timeout=2.0)
    try:
        backends = {await probe.value("SELECT pg_backend_pid()") for _ in range(5)}
        assert len(backends) == 1
        # outside any transaction: each question is a transaction of its own
        first = await probe.value("SELECT txid_current()")
        assert await probe.value("SELECT txid_current()") > first
    finally:
        await probe.close()


async def test_a_connection_the_server_closed_is_replaced_at_the_next_question(
    server: str,
) -> None:
    probe = server_probe(server, timeout=2.0)
    other = await asyncpg.connect(server)
    try:
        backend = await probe.value("SELECT pg_backend_pid()")
        await other.execute("SELECT pg_terminate_backend($1)", backend)
        # asyncpg says so as a server's error, an interface error or an internal one, by when
        # the termination arrives
        with pytest.raises(Exception):  # noqa: B017
            for _ in range(50):  # the termination reaches the client within a moment
                await probe.value("SELECT 1")
                await asyncio.sleep(0.02)
        assert await probe.value("SELECT pg_backend_pid()") != backend
    finally:
        await other.close()
        await probe.close()


async def test_a_server_that_never_answers_costs_one_timeout_then_a_new_connection() -> None:
    """A listener that accepts and stays silent stands for a frozen server: the question ends
    at the bound, and the next question connects again rather than waiting behind it."""
    accepted: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    listener = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    probe = server_probe(f"postgresql://postgres@127.0.0.1:{port}/postgres", timeout=0.3)
    try:
        for attempt in (1, 2):
            began = time.monotonic()
            with pytest.raises(TimeoutError):
                await probe.value("SELECT 1")
            assert time.monotonic() - began < 1.0
            assert len(accepted) == attempt  # a new connection for each question
    finally:
        await probe.close()
        listener.close()
        for writer in accepted:
            writer.close()
        await listener.wait_closed()
