"""The `sandbox` provider: a card network's test mode, on its own SQLite file, offline.

The card it is given decides what happens (API.md, "Payments"). Like a real provider it keeps
its own record of every charge and refund, keyed by idempotency key, apart from payments'
database: tests compare the two to prove a customer was charged exactly once.
"""

import asyncio
import sqlite3
import uuid
from pathlib import Path

from bazaar.payments.provider import Charge, ProviderRefund, ProviderRejected, ProviderTimeout
from bazaar.platform.clock import utcnow
from bazaar.platform.money import Money

CAPTURED = "pm_card_visa"
FLAKY = "pm_card_flaky"
DECLINES = {
    "pm_card_declined": "card_declined",
    "pm_card_insufficient_funds": "insufficient_funds",
}
UNKNOWN_METHOD = "unknown_payment_method"

_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS sandbox_charge (
    idempotency_key TEXT PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    payment_method TEXT NOT NULL,
    amount INTEGER NOT NULL,
    currency TEXT NOT NULL,
    outcome TEXT NOT NULL,
    decline_code TEXT,
    created_at TEXT NOT NULL
)""",
    """
CREATE TABLE IF NOT EXISTS sandbox_refund (
    idempotency_key TEXT PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    charge_id TEXT NOT NULL REFERENCES sandbox_charge (id),
    amount INTEGER NOT NULL,
    currency TEXT NOT NULL,
    created_at TEXT NOT NULL
)""",
)


class SandboxProvider:
    """Test-mode provider. `pm_card_flaky` records the charge on its first attempt and then
    times out, as if the response were lost; a retry with the same key gets that charge."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._ready = False

    async def charge(self, idempotency_key: str, amount: Money, payment_method: str) -> Charge:
        charge, first_attempt = await asyncio.to_thread(
            self._charge, idempotency_key, amount, payment_method
        )
        if first_attempt and payment_method == FLAKY:
            raise ProviderTimeout("sandbox: the response to the first attempt was lost")
        return charge

    async def refund(self, idempotency_key: str, charge_id: str, amount: Money) -> ProviderRefund:
        return await asyncio.to_thread(self._refund, idempotency_key, charge_id, amount)

    async def charges(self) -> dict[str, Charge]:
        """Every charge attempt the sandbox recorded, by idempotency key."""
        rows = await asyncio.to_thread(self._all, "SELECT * FROM sandbox_charge")
        return {row["idempotency_key"]: _charge(row) for row in rows}

    async def refunds(self) -> dict[str, ProviderRefund]:
        """Every refund the sandbox made, by idempotency key."""
        rows = await asyncio.to_thread(self._all, "SELECT * FROM sandbox_refund")
        return {row["idempotency_key"]: _refund(row) for row in rows}

    def _charge(self, key: str, amount: Money, method: str) -> tuple[Charge, bool]:
        if method in (CAPTURED, FLAKY):
            outcome, decline_code = "succeeded", None
        else:
            outcome, decline_code = "declined", DECLINES.get(method, UNKNOWN_METHOD)
        with self._transaction() as db:
            inserted = db.execute(
                "INSERT INTO sandbox_charge VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (idempotency_key) DO NOTHING",
                (
                    key,
                    f"ch_{uuid.uuid4().hex}",
                    method,
                    amount.amount,
                    amount.currency,
                    outcome,
                    decline_code,
                    utcnow().isoformat(),
                ),
            ).rowcount
            row = db.execute(
                "SELECT * FROM sandbox_charge WHERE idempotency_key = ?", (key,)
            ).fetchone()
        if (row["payment_method"], row["amount"], row["currency"]) != (
            method,
            amount.amount,
            amount.currency,
        ):
            raise ProviderRejected("sandbox: idempotency key reused with other parameters")
        return _charge(row), bool(inserted)

    def _refund(self, key: str, charge_id: str, amount: Money) -> ProviderRefund:
        with self._transaction() as db:
            row = db.execute("SELECT * FROM sandbox_refund WHERE idempotency_key = ?", (key,))
            if (existing := row.fetchone()) is not None:
                if (existing["charge_id"], existing["amount"], existing["currency"]) != (
                    charge_id,
                    amount.amount,
                    amount.currency,
                ):
                    raise ProviderRejected("sandbox: idempotency key reused with other parameters")
                return _refund(existing)
            charge = db.execute(
                "SELECT * FROM sandbox_charge WHERE id = ?", (charge_id,)
            ).fetchone()
            if charge is None or charge["outcome"] != "succeeded":
                raise ProviderRejected("sandbox: no captured charge with this id")
            refunded = db.execute(
                "SELECT COALESCE(SUM(amount), 0) FROM sandbox_refund WHERE charge_id = ?",
                (charge_id,),
            ).fetchone()[0]
            if amount.currency != charge["currency"] or not (
                0 < amount.amount <= charge["amount"] - refunded
            ):
                raise ProviderRejected("sandbox: the refund exceeds what is left of the charge")
            refund_id = f"re_{uuid.uuid4().hex}"
            db.execute(
                "INSERT INTO sandbox_refund VALUES (?, ?, ?, ?, ?, ?)",
                (key, refund_id, charge_id, amount.amount, amount.currency, utcnow().isoformat()),
            )
        return ProviderRefund(refund_id, charge_id, amount)

    def _all(self, query: str) -> list[sqlite3.Row]:
        with self._transaction() as db:
            return db.execute(query).fetchall()

    def _transaction(self) -> "_Transaction":
        if not self._ready:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with _Transaction(self.path) as db:
                for statement in _SCHEMA:
                    db.execute(statement)
            self._ready = True
        return _Transaction(self.path)


class _Transaction:
    """A connection holding the write lock (BEGIN IMMEDIATE) from entry to commit."""

    def __init__(self, path: Path) -> None:
        self._connection = sqlite3.connect(path, timeout=10, isolation_level=None)
        self._connection.row_factory = sqlite3.Row

    def __enter__(self) -> sqlite3.Connection:
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("BEGIN IMMEDIATE")
        return self._connection

    def __exit__(self, error_type: object, *_: object) -> None:
        try:
            self._connection.execute("ROLLBACK" if error_type else "COMMIT")
        finally:
            self._connection.close()


def _charge(row: sqlite3.Row) -> Charge:
    return Charge(
        id=row["id"],
        outcome=row["outcome"],
        amount=Money(row["amount"], row["currency"]),
        decline_code=row["decline_code"],
    )


def _refund(row: sqlite3.Row) -> ProviderRefund:
    return ProviderRefund(row["id"], row["charge_id"], Money(row["amount"], row["currency"]))
