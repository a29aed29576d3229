"""Orders' cart use cases: keep a customer's cart, and price it at the catalog's current
prices whenever it is shown (a cart stores quantities only): a price as recent as a product
page's, the catalog's quote of at most the staleness bound ago (`CatalogPrices`, `recent`).

Like `check_out`, the use cases of a request take its `OrdersWork`: they read and quote before
the write transaction begins, so a shard's connection is never held while the catalog answers.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from sqlalchemy import bindparam, delete, select

from bazaar.orders.models import CartItem
from bazaar.orders.prices import CatalogPrices, PricedLine, Quote
from bazaar.orders.work import OrdersWork
from bazaar.platform.clock import utcnow
from bazaar.platform.db import Database, ReadSession, WriteSession
from bazaar.platform.errors import Conflict, FieldError, NotFound, Unprocessable
from bazaar.platform.money import Money
from bazaar.platform.queries import Query

DEFAULT_CURRENCY = "USD"
"""The currency of an empty cart's zero total."""
MAX_CART_ITEMS = 100

Session = ReadSession | WriteSession


class InCart(Protocol):
    """A product in a cart, as stored (`CartItem`) or as read (`Held`)."""

    @property
    def product_id(self) -> str: ...

    @property
    def quantity(self) -> int: ...


class Held(NamedTuple):
    product_id: str
    quantity: int


_cart = CartItem.__table__
_HELD = Query(
    select(_cart.c.product_id, _cart.c.quantity)
    .where(_cart.c.customer_id == bindparam("customer_id"))
    .order_by(_cart.c.created_at, _cart.c.product_id)
)


@dataclass(frozen=True, slots=True)
class PricedCart:
    items: list[PricedLine]
    total: Money


async def cart_items(session: Session, customer_id: str) -> list[CartItem]:
    """The cart in the order its products were first added."""
    query = (
        select(CartItem)
        .where(CartItem.customer_id == customer_id)
        .order_by(CartItem.created_at, CartItem.product_id)
    )
    return list((await session.scalars(query)).all())


async def held(db: Database, customer_id: str) -> list[Held]:
    """What the cart holds, in the order its products were first added: one statement on the
    driver itself where it can (`Database.rows`), a replica's when one may serve."""
    return [Held(*row) for row in await db.rows(_HELD, {"customer_id": customer_id})]


def check_addable(quotes: dict[str, Quote], product_id: str, cart: Sequence[InCart]) -> None:
    """Refuse a product the catalog does not sell, or that another currency than the cart's."""
    quote = quotes.get(product_id)
    if quote is None:
        raise NotFound("No such product")
    others = {
        quotes[item.product_id].unit_price.currency
        for item in cart
        if item.product_id != product_id and item.product_id in quotes
    }
    if others and others != {quote.unit_price.currency}:
        raise Unprocessable(
            "The cart holds products priced in another currency",
            [FieldError(["path", "product_id"], "priced in another currency than the cart")],
        )
    if len({item.product_id for item in cart} | {product_id}) > MAX_CART_ITEMS:
        raise Unprocessable(
            f"A cart holds at most {MAX_CART_ITEMS} different products",
            [FieldError(["path", "product_id"], "the cart is full")],
        )


async def set_cart_item(
    session: WriteSession, customer_id: str, product_id: str, quantity: int
) -> list[CartItem]:
    """Put `quantity` of a product in the cart (replacing its quantity); the cart after."""
    now = utcnow()
    item = await session.get(CartItem, (customer_id, product_id))
    if item is None:
        item = CartItem(
            customer_id=customer_id,
            product_id=product_id,
            quantity=quantity,
            created_at=now,
            updated_at=now,
        )
        session.add(item)
    else:
        item.quantity = quantity
        item.updated_at = now
    await session.flush()
    return await cart_items(session, customer_id)


async def remove_cart_item(
    session: WriteSession, customer_id: str, product_id: str
) -> list[CartItem]:
    """Take a product out of the cart (nothing to do when it is not there); the cart after."""
    await session.execute(
        delete(CartItem).where(
            CartItem.customer_id == customer_id, CartItem.product_id == product_id
        )
    )
    return await cart_items(session, customer_id)


async def show_cart(work: OrdersWork, customer_id: str) -> PricedCart:
    """The customer's cart at the catalog's current prices."""
    items = await held(work.db, customer_id)
    return price_cart(items, await cart_quotes(work, (item.product_id for item in items)))


async def put_in_cart(
    work: OrdersWork, customer_id: str, product_id: str, quantity: int
) -> PricedCart:
    """Set the quantity of a product the catalog sells (`check_addable`); the cart after.

    The products are quoted before the write transaction begins. Only when another request of
    the customer's added a product in between is that one quoted within the transaction.
    """
    before = await held(work.db, customer_id)
    quotes = await cart_quotes(work, [product_id, *(item.product_id for item in before)])
    check_addable(quotes, product_id, before)
    items = await set_cart_item(await work.session(), customer_id, product_id, quantity)
    return price_cart(items, await cart_quotes(work, (i.product_id for i in items), quotes))


async def take_out_of_cart(work: OrdersWork, customer_id: str, product_id: str) -> PricedCart:
    """Take a product out of the cart (nothing to do when it is not there); the cart after.

    The cart is read first (on a replica when one may serve), so that what stays in it is
    quoted before the write transaction begins, as `put_in_cart` does.
    """
    before = await held(work.db, customer_id)
    quotes = await cart_quotes(work, (i.product_id for i in before if i.product_id != product_id))
    items = await remove_cart_item(await work.session(), customer_id, product_id)
    return price_cart(items, await cart_quotes(work, (i.product_id for i in items), quotes))


async def cart_quotes(
    work: OrdersWork, product_ids: Iterable[str], known: dict[str, Quote] | None = None
) -> dict[str, Quote]:
    """`quote_missing` as a cart is priced: at quotes of at most the staleness bound ago."""
    return await quote_missing(work.prices, product_ids, known, recent=True)


async def quote_missing(
    prices: CatalogPrices,
    product_ids: Iterable[str],
    known: dict[str, Quote] | None = None,
    *,
    recent: bool = False,
) -> dict[str, Quote]:
    """The quotes of `product_ids`: those in `known`, the others from the catalog (which is
    not asked when there are none); with `recent`, as a cart shows them (`CatalogPrices`)."""
    quotes = dict(known or {})
    missing = set(product_ids) - quotes.keys()
    if missing:
        quotes |= await prices.quote(missing, recent=recent)
    return quotes


def price_cart(items: Sequence[InCart], quotes: dict[str, Quote]) -> PricedCart:
    """The cart at current prices. Products the catalog stopped selling are left out: they
    cannot be bought, and ordering the cart skips them too."""
    lines = [
        PricedLine(item.product_id, item.quantity, quotes[item.product_id].unit_price)
        for item in items
        if item.product_id in quotes
    ]
    if len({line.unit_price.currency for line in lines}) > 1:
        # only reachable when the catalog changed a product's currency after it was added
        raise Conflict("The cart holds products priced in different currencies; remove some")
    total = Money(0, lines[0].unit_price.currency if lines else DEFAULT_CURRENCY)
    for line in lines:
        total += line.unit_price.times(line.quantity)
    return PricedCart(lines, total)
