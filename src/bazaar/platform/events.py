"""Events and the envelope they travel in, the same on every broker.

Consumers decode `data` into their own copy of the event type and ignore fields they do not
know, so a producer can add fields without breaking them; a breaking change is a new version.
"""

from datetime import datetime
from typing import Any, ClassVar, TypeVar

import msgspec

from bazaar.platform.clock import utcnow
from bazaar.platform.ids import new_id
from bazaar.platform.tracing import current_traceparent


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """Something that happened in one service that others may react to."""

    event_type: ClassVar[str]
    version: ClassVar[int] = 1
    source: ClassVar[str]
    key_field: ClassVar[str]

    @property
    def key(self) -> str:
        return str(getattr(self, self.key_field))


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    type: str
    version: int
    occurred_at: datetime
    source: str
    key: str
    trace: dict[str, str]
    data: dict[str, Any]

    @classmethod
    def wrap(cls, event: Event) -> "Envelope":
        traceparent = current_traceparent()
        return cls(
            id=new_id(),
            type=event.event_type,
            version=event.version,
            occurred_at=utcnow(),
            source=event.source,
            key=event.key,
            trace={"traceparent": traceparent} if traceparent else {},
            data=msgspec.to_builtins(event),
        )

    def encode(self) -> bytes:
        return _encoder.encode(self)

    @classmethod
    def decode(cls, raw: bytes) -> "Envelope":
        return _decoder.decode(raw)


E = TypeVar("E", bound=Event)


def read_event(envelope: Envelope, event_class: type[E]) -> E:
    return msgspec.convert(envelope.data, event_class)


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Envelope)
