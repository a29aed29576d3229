"""What identity does when another service's event arrives: nothing, it consumes none."""

from bazaar.platform.bus import Subscription


def subscriptions() -> list[Subscription]:
    """Identity reacts to no other service's events."""
    return []
