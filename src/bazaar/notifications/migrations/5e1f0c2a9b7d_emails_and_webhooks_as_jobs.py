"""emails and webhook deliveries as jobs of the platform's queue

The pending emails and deliveries become jobs, due at once (a try they had waiting is made
now); their own `next_attempt_at` goes, since the job queue keeps when to try again.

Revision ID: 5e1f0c2a9b7d
Revises: d57927b6ebc7
Create Date: 2026-11-30 04:40:00.000000
"""

from collections.abc import Sequence

import msgspec
import sqlalchemy as sa
from alembic import op

from bazaar.platform.clock import utcnow
from bazaar.platform.schema import job

revision: str = "5e1f0c2a9b7d"
down_revision: str | None = "d57927b6ebc7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = "platform_0002"

QUEUES = (("outgoing_email", "email", "email_id"), ("webhook_delivery", "webhook", "delivery_id"))


def upgrade() -> None:
    connection = op.get_bind()
    now = utcnow()
    for table, kind, field in QUEUES:
        pending = connection.execute(
            sa.text(f"SELECT id FROM {table} WHERE status = 'pending'")
        ).scalars()
        rows = [
            {
                "id": row_id,
                "kind": kind,
                "payload": msgspec.json.encode({field: row_id}),
                "status": "queued",
                "attempts": 0,
                "run_at": now,
                "created_at": now,
            }
            for row_id in pending
        ]
        if rows:
            connection.execute(job.insert(), rows)
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(f"ix_{table}_due")
            batch_op.drop_column("next_attempt_at")


def downgrade() -> None:
    for table, kind, _field in QUEUES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column(
                    "next_attempt_at",
                    sa.DateTime(timezone=True),
                    server_default=sa.func.current_timestamp(),
                    nullable=False,
                )
            )
            batch_op.create_index(f"ix_{table}_due", ["status", "next_attempt_at"], unique=False)
        op.execute(sa.text(f"DELETE FROM job WHERE kind = '{kind}'"))
