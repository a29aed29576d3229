"""the webhooks' consumer renamed notifications.webhooks

The inbox and dead-letter rows of `notifications-webhooks` become the new name's, so that an
event handled before the upgrade is not handled again after it, and its dead letters stay
listed and replayable under the name that now handles them (the bus moves what its queues
hold: `EventBus.retire`).

Revision ID: fb5a2428cd6c
Revises: 5e1f0c2a9b7d
Create Date: 2026-12-01 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "fb5a2428cd6c"
down_revision: str | None = "5e1f0c2a9b7d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = "notifications-webhooks"
NEW = "notifications.webhooks"


def upgrade() -> None:
    rename_consumer(OLD, NEW)


def downgrade() -> None:
    rename_consumer(NEW, OLD)


def rename_consumer(old: str, new: str) -> None:
    names = {"old": old, "new": new}
    # An event already recorded under both names (a process of the new version handled it
    # before this ran) keeps one row: the key is (consumer, event_id).
    op.execute(
        sa.text(
            "DELETE FROM processed_event WHERE consumer = :old AND event_id IN"
            " (SELECT event_id FROM processed_event WHERE consumer = :new)"
        ).bindparams(**names)
    )
    for table in ("processed_event", "dead_letter"):
        op.execute(
            sa.text(f"UPDATE {table} SET consumer = :new WHERE consumer = :old").bindparams(**names)
        )
