"""Every service, from its own definition (`bazaar.<service>.DEFINITION`): the one list the
rest of the runtime derives from."""

from bazaar import catalog, identity, notifications, orders, payments
from bazaar.platform.service import ServiceDefinition

DEFINITIONS: tuple[ServiceDefinition, ...] = (
    identity.DEFINITION,
    catalog.DEFINITION,
    orders.DEFINITION,
    payments.DEFINITION,
    notifications.DEFINITION,
)
SERVICES = tuple(definition.name for definition in DEFINITIONS)
ROUTES = {definition.name: definition.routes for definition in DEFINITIONS}
"""The path prefixes each service owns."""
SERVICE_DATABASES = tuple(d.database for d in DEFINITIONS if d.database is not None)
"""The services' own databases (the order shards besides)."""
