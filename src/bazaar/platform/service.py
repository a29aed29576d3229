"""What a service is, said once: each service's package exports its `DEFINITION`, and the
runtime, `bazaar up` (its HAProxy routing included), the command line and `bazaar status`
derive the list of services, their path prefixes and their databases from those."""

from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceDefinition:
    name: str
    routes: tuple[str, ...]
    """The path prefixes the service owns (API.md): each prefix and every path below it."""
    database: str | None
    """The name of its own database (`bazaar_<name>` on PostgreSQL, `<name>.db` on SQLite);
    None for a service whose rows live elsewhere (orders: the order shards)."""
