"""Fixtures of the payments tests: payments' own database, the sandbox, fast retries."""

from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from sqlalchemy import select

from bazaar.payments.sandbox import SandboxProvider
from bazaar.payments.settings import PaymentsSettings
from bazaar.payments.wiring import SCHEMA
from bazaar.platform.db import Database
from bazaar.platform.events import Envelope
from bazaar.platform.schema import outbox_message
from tests.plugin import migrated


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    async with migrated("payments", tmp_path, SCHEMA) as database:
        yield database


@pytest.fixture
def sandbox(tmp_path: Path) -> SandboxProvider:
    return SandboxProvider(tmp_path / "sandbox-provider.db")


@pytest.fixture
def settings() -> PaymentsSettings:
    return PaymentsSettings(provider="sandbox", retry_attempts=3, retry_backoff=0.0)


async def published(db: Database, event_type: str) -> list[dict]:
    """The data of every `event_type` event payments wrote to its outbox, oldest first."""
    async with db.read() as session:
        rows = await session.execute(
            select(outbox_message.c.envelope)
            .where(outbox_message.c.type == event_type)
            .order_by(outbox_message.c.id)
        )
        return [msgspec.to_builtins(Envelope.decode(row.envelope).data) for row in rows]
