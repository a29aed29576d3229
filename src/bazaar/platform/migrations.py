"""Alembic migrations per service database, run in process against the runtime's engines."""

import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, MetaData, text

from bazaar.platform.db import Database

ENVIRONMENT = str(Path(__file__).parent / "alembic")
PLATFORM_VERSIONS = str(Path(__file__).parent / "alembic" / "versions")


@dataclass(frozen=True)
class ServiceSchema:
    """A service's tables and the package whose `migrations/` folder holds their revisions.

    A service database has two branches of revisions: the service's own (labelled with its
    name) and the platform's (outbox, inbox, dead letters, idempotency), kept once in
    `bazaar/platform/alembic/versions/`.
    """

    package: str
    metadata: MetaData

    @property
    def branch(self) -> str:
        return self.package.rsplit(".", 1)[-1]

    @property
    def versions(self) -> str:
        return str(resources.files(self.package) / "migrations")


def modelled(metadata: MetaData) -> Callable[[str | None, str, object], bool]:
    """Alembic's `include_name` for a service: leaves out what its models say no model
    describes (`metadata.info["unmodelled"]`, names by kind: a virtual table and the tables
    it keeps, an expression index), so that a comparison neither reports nor drops them."""
    unmodelled = metadata.info.get("unmodelled", {})

    def include(name: str | None, kind: str, _parents: object) -> bool:
        return name not in unmodelled.get(kind, ())

    return include


def _config(connection: Connection, schema: ServiceSchema) -> Config:
    config = Config()
    config.set_main_option("script_location", ENVIRONMENT)
    config.set_main_option(
        "version_locations", os.pathsep.join([schema.versions, PLATFORM_VERSIONS])
    )
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    config.attributes["metadata"] = schema.metadata
    return config


MIGRATION_LOCK = 0x62617A61  # any constant shared by every process that migrates


async def upgrade(db: Database, schema: ServiceSchema, to: str = "heads") -> None:
    """Bring `db` to the newest revision of `schema` (nothing to do when it is there), or to
    the revisions `to` names (a test of a migration starts from the one before).

    Safe from two processes at once: on PostgreSQL the migration runs in one transaction
    holding an advisory lock, so the second waits and then finds nothing to do (SQLite's
    writer lock does the same).
    """
    async with db.primary.begin() as connection:
        if db.dialect == "postgresql":
            # waiting out another process's migration is expected: no lock timeout here
            await connection.execute(text("SET LOCAL lock_timeout = 0"))
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK}
            )
        await connection.run_sync(lambda sync: command.upgrade(_config(sync, schema), to))
    if db.replicas is not None:
        db.replicas.note_own_commit()


async def new_revision(db: Database, schema: ServiceSchema, message: str) -> None:
    """Write a revision with what `schema` has that `db` (at head) lacks."""
    async with db.primary.begin() as connection:
        await connection.run_sync(
            lambda sync: command.revision(
                _config(sync, schema),
                message=message,
                autogenerate=True,
                head=f"{schema.branch}@head",
            )
        )
