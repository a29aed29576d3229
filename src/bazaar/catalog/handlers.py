"""What catalog does when events arrive: the saga's stock steps, and dropping stale pages."""

from bazaar.catalog import reservations
from bazaar.catalog.events import ProductUpdated
from bazaar.catalog.pages import ProductPages
from bazaar.catalog.reservations import ReservationStatus
from bazaar.orders.events import OrderCancelled, OrderPlaced
from bazaar.platform.bus import Subscription, broadcast, subscribe
from bazaar.platform.db import Database, WriteSession


def subscriptions(db: Database, pages: ProductPages) -> list[Subscription]:
    """The saga's stock steps, each in its own consumer, and the drop of a page another
    instance changed (a broadcast: every instance drops its own copy)."""

    async def reserve_stock(session: WriteSession, event: OrderPlaced) -> None:
        reservation = await reservations.reserve_stock(session, event)
        if reservation is not None and reservation.status == ReservationStatus.RESERVED:
            pages.drop_after_commit(session, [line["product_id"] for line in reservation.lines])

    async def release_stock(session: WriteSession, event: OrderCancelled) -> None:
        released = await reservations.release_stock(session, event)
        if released:
            pages.drop_after_commit(session, released)

    async def drop_product_page(event: ProductUpdated) -> None:
        # Another instance changed the product: this one's cached page is stale.
        await pages.drop_older(event.product_id, event.updated_at)

    return [
        subscribe("catalog.reserve_stock", OrderPlaced, reserve_stock, db),
        subscribe("catalog.release_stock", OrderCancelled, release_stock, db),
        broadcast("catalog.drop_product_page", ProductUpdated, drop_product_page),
    ]
