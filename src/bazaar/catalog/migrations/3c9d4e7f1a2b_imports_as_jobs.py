"""imports as jobs of the platform's queue

The imports not finished become jobs, due at once; the job queue keeps their claim and their
attempts, so `heartbeat_at` and `attempts` go.

Revision ID: 3c9d4e7f1a2b
Revises: 08bbcaa708e7
Create Date: 2026-11-30 05:00:00.000000
"""

from collections.abc import Sequence

import msgspec
import sqlalchemy as sa
from alembic import op

from bazaar.platform.clock import utcnow
from bazaar.platform.schema import job

revision: str = "3c9d4e7f1a2b"
down_revision: str | None = "08bbcaa708e7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = "platform_0002"


def upgrade() -> None:
    connection = op.get_bind()
    now = utcnow()
    unfinished = connection.execute(
        sa.text("SELECT id FROM import_job WHERE status IN ('queued', 'running')")
    ).scalars()
    rows = [
        {
            "id": import_id,
            "kind": "product_import",
            "payload": msgspec.json.encode({"import_id": import_id}),
            "status": "queued",
            "attempts": 0,
            "run_at": now,
            "created_at": now,
        }
        for import_id in unfinished
    ]
    if rows:
        connection.execute(job.insert(), rows)
    with op.batch_alter_table("import_job", schema=None) as batch_op:
        batch_op.drop_column("attempts")
        batch_op.drop_column("heartbeat_at")


def downgrade() -> None:
    with op.batch_alter_table("import_job", schema=None) as batch_op:
        batch_op.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))
    op.execute(sa.text("DELETE FROM job WHERE kind = 'product_import'"))
