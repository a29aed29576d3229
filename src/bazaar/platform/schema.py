"""The tables every service database has besides its own: outbox, inbox, dead letters,
idempotency records, jobs. Each service's migrations create them with its own tables."""

from sqlalchemy import (
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

from bazaar.platform.db import Timestamp

metadata = MetaData()

outbox_message = Table(
    "outbox_message",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("type", String(100), nullable=False),
    Column("key", String(100), nullable=False),
    Column("envelope", LargeBinary, nullable=False),
    Column("created_at", Timestamp(), nullable=False),
    Column("published_at", Timestamp()),
    Index("ix_outbox_message_unpublished", "published_at", "id"),
)

processed_event = Table(
    "processed_event",
    metadata,
    Column("consumer", String(100), primary_key=True),
    Column("event_id", String(36), primary_key=True),
    Column("processed_at", Timestamp(), nullable=False),
)

dead_letter = Table(
    "dead_letter",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("consumer", String(100), nullable=False),
    Column("event_id", String(36), nullable=False),
    Column("type", String(100), nullable=False),
    Column("envelope", LargeBinary, nullable=False),
    Column("error", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("failed_at", Timestamp(), nullable=False),
    Column("replayed_at", Timestamp()),
)

idempotency_record = Table(
    "idempotency_record",
    metadata,
    Column("scope", String(100), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("response_status", Integer),
    Column("response_body", LargeBinary),
    Column("created_at", Timestamp(), nullable=False),
    Column("completed_at", Timestamp()),
)

job = Table(
    "job",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("kind", String(100), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("status", String(20), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("run_at", Timestamp(), nullable=False),
    Column("last_error", Text),
    Column("created_at", Timestamp(), nullable=False),
    Index("ix_job_due", "status", "kind", "run_at"),
)
