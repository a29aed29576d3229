"""What a service contributes to a process; the runtime puts the parts of several together."""

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from litestar import Router

from bazaar.platform.bus import Subscription
from bazaar.platform.db import Database
from bazaar.platform.migrations import ServiceSchema

Loop = Callable[[], Awaitable[None]]
"""A background task that runs until cancelled (a mailer, a webhook sender)."""


@dataclass(frozen=True)
class ServiceParts:
    name: str
    schema: ServiceSchema
    databases: Sequence[Database]
    """Where the schema lives (one database, or every shard); each has its own outbox."""
    router: Router
    subscriptions: Sequence[Subscription] = ()
    background: Sequence[Loop] = ()
    closers: Sequence[Callable[[], Awaitable[None]]] = ()
    """What the process calls as it stops: connections of the service's own to close."""
    retired_consumers: Mapping[str, str] = field(default_factory=dict)
    """Consumer names the service no longer uses, each with its successor (see
    `EventBus.retire`)."""
