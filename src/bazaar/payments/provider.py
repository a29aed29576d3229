"""The payment provider port: what payments needs from a card network, and its errors.

Every call carries an idempotency key: the provider performs at most one charge or refund per
key and answers a repeated key with what it recorded the first time. That is what makes a
retry after a timeout safe.
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

from bazaar.platform.money import Money


class ProviderError(Exception):
    """The provider did not give an answer about the request."""


class ProviderTimeout(ProviderError):
    """No answer in time: the request may or may not have been carried out."""


class ProviderUnavailable(ProviderError):
    """The provider refused the connection: the request was not carried out."""


class ProviderRejected(ProviderError):
    """The provider refused the request itself (a key reused with other parameters, a refund
    larger than its charge): retrying it cannot help."""


@dataclass(frozen=True)
class Charge:
    id: str
    outcome: Literal["succeeded", "declined"]
    amount: Money
    decline_code: str | None = None


@dataclass(frozen=True)
class ProviderRefund:
    id: str
    charge_id: str
    amount: Money


class PaymentProvider(Protocol):
    async def charge(self, idempotency_key: str, amount: Money, payment_method: str) -> Charge:
        """Authorise and capture `amount`; a declined card is an outcome, not an error."""
        ...

    async def refund(self, idempotency_key: str, charge_id: str, amount: Money) -> ProviderRefund:
        """Give back part or all of a captured charge."""
        ...


T = TypeVar("T")


async def with_retries(call: Callable[[], Awaitable[T]], attempts: int, backoff: float) -> T:
    """Call until it answers, retrying timeouts and unavailability with doubling waits.

    Only safe because every provider call is keyed: a retry of a request that did happen
    returns the recorded result instead of doing it again. Raises the last error when every
    attempt failed.
    """
    for attempt in range(attempts):
        try:
            return await call()
        except (ProviderTimeout, ProviderUnavailable):
            if attempt + 1 == attempts:
                raise
            await asyncio.sleep(backoff * 2**attempt)
    raise AssertionError("unreachable: attempts >= 1")
