"""Alembic environment shared by every service: the runtime hands it the connection and the
service's tables; the service's own `migrations/` folder holds its revisions."""

from alembic import context

from bazaar.platform import schema
from bazaar.platform.migrations import modelled

config = context.config
connection = config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=[config.attributes["metadata"], schema.metadata],
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    include_name=modelled(config.attributes["metadata"]),
)
with context.begin_transaction():
    context.run_migrations()
