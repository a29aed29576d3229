"""Every published event's class is named as it is published: `order.confirmed` is
`OrderConfirmed`, so a reader finds the class from a message and the message from the class."""

import pytest

from bazaar.catalog import events as catalog
from bazaar.identity import events as identity
from bazaar.orders import events as orders
from bazaar.payments import events as payments
from bazaar.platform.events import Event

PUBLISHED = [
    value
    for module in (identity, catalog, orders, payments)
    for value in vars(module).values()
    if isinstance(value, type) and issubclass(value, Event) and "event_type" in vars(value)
]


def test_every_service_publishes_something() -> None:
    assert {event.__module__ for event in PUBLISHED} == {
        m.__name__ for m in (identity, catalog, orders, payments)
    }


@pytest.mark.parametrize("event", PUBLISHED, ids=lambda event: event.event_type)
def test_the_class_is_named_as_the_event_is_published(event: type[Event]) -> None:
    expected = "".join(word.capitalize() for word in event.event_type.split("."))
    assert event.__name__ == expected
