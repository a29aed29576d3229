"""Events identity publishes: its contract with the other services."""

from typing import ClassVar

from bazaar.platform.events import Event


class IdentityEvent(Event, frozen=True, kw_only=True):
    source: ClassVar[str] = "identity"


class UserRegistered(IdentityEvent, frozen=True, kw_only=True):
    event_type: ClassVar[str] = "user.registered"
    key_field: ClassVar[str] = "user_id"

    user_id: str
    email: str
    name: str
    role: str
