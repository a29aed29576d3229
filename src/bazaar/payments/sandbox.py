"""The `sandbox` provider: a card network's test mode, offline, on a store of its own.

The card it is given decides what happens (API.md, "Payments"). Like a real provider it keeps
its own record of every charge and refund, keyed by idempotency key, apart from payments'
database: tests compare the two to prove a customer was charged exactly once.
"""

import asyncio
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from bazaar.payments.provider import Charge, ProviderRefund, ProviderRejected, ProviderTimeout
from bazaar.platform.clock import utcnow
from bazaar.platform.db import Database
from bazaar.platform.money import Money
from bazaar.platform.postgres import PoolSettings, ensure_database, postgres_database
from bazaar.platform.queries import Query
from bazaar.platform.sqlite import sqlite_database
from bazaar.platform.statements import insert_ignoring_duplicates, run

CAPTURED = "pm_card_visa"
FLAKY = "pm_card_flaky"
DECLINES = {
    "pm_card_declined": "card_declined",
    "pm_card_insufficient_funds": "insufficient_funds",
}
UNKNOWN_METHOD = "unknown_payment_method"

_tables = MetaData()
sandbox_charge = Table(
    "sandbox_charge",
    _tables,
    Column("idempotency_key", String(400), primary_key=True),
    Column("id", String(40), nullable=False, unique=True),
    Column("payment_method", String(100), nullable=False),
    Column("amount", Integer, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("outcome", String(20), nullable=False),
    Column("decline_code", String(100)),
    Column("created_at", String(40), nullable=False),
)
sandbox_refund = Table(
    "sandbox_refund",
    _tables,
    Column("idempotency_key", String(400), primary_key=True),
    Column("id", String(40), nullable=False, unique=True),
    Column("charge_id", String(40), nullable=False, index=True),
    Column("amount", Integer, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("created_at", String(40), nullable=False),
)


class SandboxProvider:
    """Test-mode provider. `pm_card_flaky` records the charge on its first attempt and then
    times out, as if the response were lost; a retry with the same key gets that charge.

    Its records, like a real provider's, are one store for every process that calls it: a
    SQLite file (`bazaar dev`, processes sharing a data folder) or, given a PostgreSQL URL, a
    database of its own, made on first use, so that pods that share no folder (Kubernetes) see
    the same charges: one pod captures, another refunds. Not payments' database: a charge is
    made while a payments transaction holds a connection there, and through a small server
    pool (PgBouncer) the two would wait for each other. `pooler` is
    `BAZAAR_DATABASE_POOLER`'s.
    """

    def __init__(self, store: Path | str, pooler: str | None = None) -> None:
        self.store = store
        self.pooler = pooler
        self._db: Database | None = None
        self._ready = asyncio.Lock()

    async def charge(self, idempotency_key: str, amount: Money, payment_method: str) -> Charge:
        if payment_method in (CAPTURED, FLAKY):
            outcome, decline_code = "succeeded", None
        else:
            outcome, decline_code = "declined", DECLINES.get(payment_method, UNKNOWN_METHOD)
        async with (await self._database()).write() as session:
            first_attempt = await insert_ignoring_duplicates(
                session,
                sandbox_charge,
                idempotency_key=idempotency_key,
                id=f"ch_{uuid.uuid4().hex}",
                payment_method=payment_method,
                amount=amount.amount,
                currency=amount.currency,
                outcome=outcome,
                decline_code=decline_code,
                created_at=utcnow().isoformat(),
            )
            [found] = (await run(session, _CHARGE, {"key": idempotency_key})).rows
            row = SimpleNamespace(**dict(zip(sandbox_charge.columns.keys(), found, strict=True)))
        if (row.payment_method, row.amount, row.currency) != (
            payment_method,
            amount.amount,
            amount.currency,
        ):
            raise ProviderRejected("sandbox: idempotency key reused with other parameters")
        if first_attempt and payment_method == FLAKY:
            raise ProviderTimeout("sandbox: the response to the first attempt was lost")
        return _charge(row)

    async def refund(self, idempotency_key: str, charge_id: str, amount: Money) -> ProviderRefund:
        async with (await self._database()).write() as session:
            existing = (
                await session.execute(
                    select(sandbox_refund).where(
                        sandbox_refund.c.idempotency_key == idempotency_key
                    )
                )
            ).one_or_none()
            if existing is not None:
                if (existing.charge_id, existing.amount, existing.currency) != (
                    charge_id,
                    amount.amount,
                    amount.currency,
                ):
                    raise ProviderRejected("sandbox: idempotency key reused with other parameters")
                return _refund(existing)
            # locked: two refunds of one charge at once are counted one after the other
            charge = (
                await session.execute(
                    select(sandbox_charge).where(sandbox_charge.c.id == charge_id).with_for_update()
                )
            ).one_or_none()
            if charge is None or charge.outcome != "succeeded":
                raise ProviderRejected("sandbox: no captured charge with this id")
            refunded = (
                await session.execute(
                    select(func.coalesce(func.sum(sandbox_refund.c.amount), 0)).where(
                        sandbox_refund.c.charge_id == charge_id
                    )
                )
            ).scalar_one()
            if amount.currency != charge.currency or not (
                0 < amount.amount <= charge.amount - refunded
            ):
                raise ProviderRejected("sandbox: the refund exceeds what is left of the charge")
            refund_id = f"re_{uuid.uuid4().hex}"
            await session.execute(
                sandbox_refund.insert().values(
                    idempotency_key=idempotency_key,
                    id=refund_id,
                    charge_id=charge_id,
                    amount=amount.amount,
                    currency=amount.currency,
                    created_at=utcnow().isoformat(),
                )
            )
        return ProviderRefund(refund_id, charge_id, amount)

    async def charges(self) -> dict[str, Charge]:
        """Every charge attempt the sandbox recorded, by idempotency key."""
        return {row.idempotency_key: _charge(row) for row in await self._all(sandbox_charge)}

    async def refunds(self) -> dict[str, ProviderRefund]:
        """Every refund the sandbox made, by idempotency key."""
        return {row.idempotency_key: _refund(row) for row in await self._all(sandbox_refund)}

    async def close(self) -> None:
        if self._db is not None:
            await self._db.dispose()
            self._db = None

    async def _all(self, table: Table) -> list[Any]:
        async with (await self._database()).read(fresh=True) as session:
            return list((await session.execute(select(table))).all())

    async def _database(self) -> Database:
        """The store, made on first use: its database (PostgreSQL) and its tables."""
        if self._db is not None:
            return self._db
        async with self._ready:
            if self._db is None:
                self._db = await _open(self.store, self.pooler)
        return self._db


async def _open(store: Path | str, pooler: str | None) -> Database:
    if isinstance(store, Path):
        store.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite_database("sandbox", store)
    else:
        await ensure_database(make_url(store))
        pool = PoolSettings(size=2, overflow=3, timeout=5)
        db = postgres_database("sandbox", store, pool, pooler=pooler)
    try:
        async with db.primary.begin() as connection:
            await connection.run_sync(_tables.create_all)
    except DBAPIError:  # another process created them at the same moment
        async with db.primary.begin() as connection:
            await connection.run_sync(_tables.create_all)
    return db


_CHARGE = Query(select(sandbox_charge).where(sandbox_charge.c.idempotency_key == bindparam("key")))


def _charge(row: Any) -> Charge:
    return Charge(
        id=row.id,
        outcome=row.outcome,
        amount=Money(row.amount, row.currency),
        decline_code=row.decline_code,
    )


def _refund(row: Any) -> ProviderRefund:
    return ProviderRefund(row.id, row.charge_id, Money(row.amount, row.currency))
