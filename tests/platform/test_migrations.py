"""Every service's migrations, with the platform's, build exactly the tables of its models."""

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData

from bazaar.catalog.wiring import SCHEMA as CATALOG
from bazaar.identity.wiring import SCHEMA as IDENTITY
from bazaar.notifications.wiring import SCHEMA as NOTIFICATIONS
from bazaar.orders.wiring import SCHEMA as ORDERS
from bazaar.payments.wiring import SCHEMA as PAYMENTS
from bazaar.platform import migrations, schema
from bazaar.platform.migrations import ServiceSchema
from bazaar.platform.sqlite import sqlite_database


@pytest.mark.parametrize(
    "service", [IDENTITY, CATALOG, ORDERS, PAYMENTS, NOTIFICATIONS], ids=lambda s: s.branch
)
async def test_migrations_match_the_models(service: ServiceSchema, tmp_path: Path) -> None:
    db = sqlite_database(service.branch, tmp_path / "db.sqlite")
    try:
        await migrations.upgrade(db, service)
        await migrations.upgrade(db, service)  # a second run has nothing to do
        expected = MetaData()
        for table in (*service.metadata.tables.values(), *schema.metadata.tables.values()):
            table.to_metadata(expected)
        async with db.primary.connect() as connection:
            differences = await connection.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(
                        sync, opts={"include_name": migrations.modelled(service.metadata)}
                    ),
                    expected,
                )
            )
    finally:
        await db.dispose()
    assert differences == []
