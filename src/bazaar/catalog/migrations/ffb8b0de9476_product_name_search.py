"""product name search: an index for `?q=`, a case-insensitive substring of the name

PostgreSQL: a pg_trgm GIN index on `lower(name)`, which `lower(name) LIKE '%q%'` uses (the
index is built from the rows already there). SQLite: an FTS5 table with the trigram tokenizer
over the product's name (external content: the name is not stored twice, FTS rows are keyed
by the product's rowid), kept in step by triggers and filled from the rows already there.

Neither is described by the models (alembic cannot express a virtual table, nor its triggers):
a later revision that recreates `product` on SQLite (batch mode copies it into a new table and
drops the old one, triggers included) must create the triggers again and rebuild the index
(`INSERT INTO product_name_search(product_name_search) VALUES ('rebuild')`).

Revision ID: ffb8b0de9476
Revises: 3c9d4e7f1a2b
Create Date: 2026-12-05 09:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "ffb8b0de9476"
down_revision: str | None = "3c9d4e7f1a2b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SQLITE_UPGRADE = (
    "CREATE VIRTUAL TABLE product_name_search USING fts5("
    "name, content='product', content_rowid='rowid', tokenize='trigram')",
    # An external-content index is told the old values to take out: they must be the indexed ones.
    """CREATE TRIGGER product_name_search_insert AFTER INSERT ON product BEGIN
        INSERT INTO product_name_search (rowid, name) VALUES (new.rowid, new.name);
    END""",
    """CREATE TRIGGER product_name_search_update AFTER UPDATE OF name ON product
    WHEN old.name IS NOT new.name BEGIN
        INSERT INTO product_name_search (product_name_search, rowid, name)
        VALUES ('delete', old.rowid, old.name);
        INSERT INTO product_name_search (rowid, name) VALUES (new.rowid, new.name);
    END""",
    """CREATE TRIGGER product_name_search_delete AFTER DELETE ON product BEGIN
        INSERT INTO product_name_search (product_name_search, rowid, name)
        VALUES ('delete', old.rowid, old.name);
    END""",
    "INSERT INTO product_name_search (product_name_search) VALUES ('rebuild')",
)
SQLITE_DOWNGRADE = (
    "DROP TRIGGER product_name_search_delete",
    "DROP TRIGGER product_name_search_update",
    "DROP TRIGGER product_name_search_insert",
    "DROP TABLE product_name_search",
)
POSTGRESQL_UPGRADE = (
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",  # trusted: a database owner may create it
    # New rows wait in the index's pending list, which every search reads whole and the planner
    # counts against the index, until a vacuum or a full list (4 MB by default) merges them:
    # a list of 256 kB keeps bulk inserts cheap and searches fast after an import.
    "CREATE INDEX ix_product_name_trigram ON product USING gin (lower(name) gin_trgm_ops)"
    " WITH (gin_pending_list_limit = 256)",
    # the planner's statistics of `lower(name)`, which it weighs the index against a walk of
    # the primary key with (a common word is found sooner in id order)
    "ANALYZE product",
)
POSTGRESQL_DOWNGRADE = ("DROP INDEX ix_product_name_trigram",)


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for statement in POSTGRESQL_UPGRADE if postgresql else SQLITE_UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for statement in POSTGRESQL_DOWNGRADE if postgresql else SQLITE_DOWNGRADE:
        op.execute(statement)
