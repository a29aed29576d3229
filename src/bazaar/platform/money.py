"""Money: an integer amount in minor units and an ISO 4217 currency. Never floats."""

from typing import Annotated

import msgspec

Currency = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]


class Money(msgspec.Struct, frozen=True):
    amount: int
    currency: Currency

    def __add__(self, other: "Money") -> "Money":
        if other.currency != self.currency:
            raise ValueError(f"cannot add {other.currency} to {self.currency}")
        return Money(self.amount + other.amount, self.currency)

    def times(self, quantity: int) -> "Money":
        return Money(self.amount * quantity, self.currency)
