"""Orders' HTTP routes: the cart, placing orders (idempotent), reading and cancelling them.

A customer's cart and orders live on their shard (`orders.for_customer`); an order id names
its shard (`orders.for_id`), so an order is found from its id alone.
"""

from collections.abc import Iterable, Sequence
from contextlib import AsyncExitStack
from datetime import datetime
from typing import Annotated, Literal

import msgspec
from litestar import Request, Response, Router, delete, get, post, put
from litestar.params import FromPath, JSONBody, Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED

from bazaar.orders import listing, service
from bazaar.orders.models import CartItem, Order
from bazaar.orders.prices import CatalogPrices, Quote
from bazaar.orders.schemas import (
    AdminOrderRead,
    CartItemUpdate,
    CartRead,
    LineRead,
    OrderRead,
    PlaceOrderRequest,
)
from bazaar.platform import idempotency
from bazaar.platform.db import Database, WriteSession
from bazaar.platform.errors import FieldError, NotFound, Unprocessable
from bazaar.platform.openapi import problems
from bazaar.platform.pagination import Cursor, Limit, Page, decode_cursor, page_of
from bazaar.platform.shards import ShardedDatabase
from bazaar.platform.web import CurrentUser, json_response

StatusFilter = Annotated[
    Literal["pending", "confirmed", "cancelled"] | None,
    Parameter(description="Only orders in this status."),
]
CustomerFilter = Annotated[
    str | None,
    Parameter(max_length=36, description="Only this customer's orders (reads one shard)."),
]


def order_read(order: Order) -> OrderRead:
    return OrderRead(
        id=order.id,
        status=order.status,
        cancel_reason=order.cancel_reason,
        items=[LineRead(i.product_id, i.quantity, i.unit_price) for i in order.items],
        total=order.total,
        payment_id=order.payment_id,
        created_at=order.created_at,
        updated_at=order.updated_at,
    )


def admin_order_read(order: Order) -> AdminOrderRead:
    return AdminOrderRead(
        **msgspec.structs.asdict(order_read(order)), customer_id=order.customer_id
    )


def create_router(
    orders: ShardedDatabase, prices: CatalogPrices, idempotent: idempotency.Idempotency
) -> Router:
    async def quote(
        product_ids: Iterable[str], known: dict[str, Quote] | None = None
    ) -> dict[str, Quote]:
        quotes = dict(known or {})
        missing = set(product_ids) - quotes.keys()
        if missing:
            quotes |= await prices.quote(missing)
        return quotes

    async def cart_read(
        items: Sequence[CartItem], known: dict[str, Quote] | None = None
    ) -> CartRead:
        quotes = await quote((item.product_id for item in items), known)
        cart = service.price_cart(items, quotes)
        lines = [LineRead(line.product_id, line.quantity, line.unit_price) for line in cart.items]
        return CartRead(items=lines, total=cart.total)

    def shard_of(order_id: str) -> Database:
        db = orders.for_id(order_id)
        if db is None:
            raise NotFound("No such order")
        return db

    @get("/cart", summary="The caller's cart at current catalog prices", responses=problems(409))
    async def get_cart(user: CurrentUser) -> CartRead:
        async with orders.for_customer(user.id).read() as session:
            items = await service.cart_items(session, user.id)
        return await cart_read(items)

    @put(
        "/cart/items/{product_id:str}",
        status_code=HTTP_200_OK,
        summary="Set the quantity of a product in the cart",
        responses=problems(404, 409),
    )
    async def put_cart_item(
        user: CurrentUser, product_id: FromPath[str], data: JSONBody[CartItemUpdate]
    ) -> CartRead:
        db = orders.for_customer(user.id)
        async with db.read() as session:
            before = await service.cart_items(session, user.id)
        quotes = await quote([product_id, *(item.product_id for item in before)])
        service.check_addable(quotes, product_id, before)
        async with db.write() as session:
            items = await service.set_cart_item(session, user.id, product_id, data.quantity)
        return await cart_read(items, quotes)

    @delete(
        "/cart/items/{product_id:str}",
        status_code=HTTP_200_OK,
        summary="Take a product out of the cart",
        responses=problems(409),
    )
    async def delete_cart_item(user: CurrentUser, product_id: FromPath[str]) -> CartRead:
        async with orders.for_customer(user.id).write() as session:
            items = await service.remove_cart_item(session, user.id, product_id)
        return await cart_read(items)

    @post(
        "/orders",
        status_code=HTTP_202_ACCEPTED,
        summary="Place an order: it starts pending while stock and payment are settled",
        responses=problems(409),
    )
    async def place_order(
        user: CurrentUser,
        request: Request,
        data: JSONBody[PlaceOrderRequest],
        idempotency_key: idempotency.KeyHeader = None,
    ) -> Response[OrderRead]:
        key = idempotency.check_key(idempotency_key)
        scope = f"orders:{user.id}"
        fingerprint = idempotency.fingerprint(
            request.method, request.url.path, await request.body()
        )
        # A replay Redis knows is answered before the cart and the catalog are asked.
        stored = await idempotent.replay(scope, key, fingerprint)
        if stored is not None:
            return json_response(stored.body, stored.status, {"Idempotent-Replayed": "true"})
        db = orders.for_customer(user.id)
        lines = (
            None
            if data.items is None
            else [service.Line(item.product_id, item.quantity) for item in data.items]
        )
        if lines is None:
            async with db.read() as session:
                wanted = [item.product_id for item in await service.cart_items(session, user.id)]
        else:
            wanted = [line.product_id for line in lines]
        # quoted before the transaction, so that the shard is not held while the catalog answers
        quotes = await quote(wanted)

        async def work(session: WriteSession) -> tuple[int, bytes]:
            order = await service.place_order(
                session,
                prices,
                order_id=orders.new_id(user.id),
                customer_id=user.id,
                lines=lines,
                payment_method=data.payment_method,
                shipping_address=msgspec.to_builtins(data.shipping_address),
                quotes=quotes,
            )
            return HTTP_202_ACCEPTED, msgspec.json.encode(order_read(order))

        stored = await idempotent.run_once(db, scope, key, fingerprint, work)
        headers = {"Idempotent-Replayed": "true"} if stored.replayed else None
        return json_response(stored.body, stored.status, headers)

    @get("/orders", summary="The caller's orders, newest first")
    async def list_orders(
        user: CurrentUser, limit: Limit = 20, cursor: Cursor = None
    ) -> Page[OrderRead]:
        position = decode_cursor(cursor)
        if position is not None and not (len(position) == 1 and isinstance(position[0], str)):
            raise Unprocessable(
                "The cursor is not valid", [FieldError(["query", "cursor"], "invalid")]
            )
        before = position[0] if position else None
        async with orders.for_customer(user.id).read() as session:
            found = await listing.list_orders(session, user.id, limit, before)
        page = page_of(found, limit, lambda order: (order.id,))
        return Page(items=[order_read(order) for order in page.items], next_cursor=page.next_cursor)

    @get(
        "/admin/orders",
        summary="Every customer's orders across the shards, newest first (admin)",
        responses=problems(403),
    )
    async def list_all_orders(
        user: CurrentUser,
        limit: Limit = 20,
        cursor: Cursor = None,
        status: StatusFilter = None,
        customer_id: CustomerFilter = None,
    ) -> Page[AdminOrderRead]:
        user.require_admin()
        after = _admin_position(decode_cursor(cursor))
        shards = [orders.for_customer(customer_id)] if customer_id else list(orders.shards)
        async with AsyncExitStack() as stack:
            sessions = [await stack.enter_async_context(shard.read()) for shard in shards]
            found = await listing.list_all_orders(
                sessions, limit, after, status=status, customer_id=customer_id
            )
        page = page_of(found, limit, lambda order: (order.created_at.isoformat(), order.id))
        return Page([admin_order_read(order) for order in page.items], page.next_cursor)

    @get(
        "/orders/{order_id:str}",
        summary="One order (its owner or an admin)",
        responses=problems(404),
    )
    async def get_order(user: CurrentUser, order_id: FromPath[str]) -> OrderRead:
        order = await shard_of(order_id).read_by_id(
            lambda session: service.get_order(session, order_id, user)
        )
        return order_read(order)

    @post(
        "/orders/{order_id:str}/cancel",
        status_code=HTTP_200_OK,
        summary="Cancel an order (its owner or an admin); a confirmed order is refunded",
        responses=problems(404, 409),
    )
    async def cancel_order(user: CurrentUser, order_id: FromPath[str]) -> OrderRead:
        async with shard_of(order_id).write() as session:
            return order_read(await service.cancel_order(session, order_id, user))

    return Router(
        "/v1",
        route_handlers=[
            get_cart,
            put_cart_item,
            delete_cart_item,
            place_order,
            list_orders,
            list_all_orders,
            get_order,
            cancel_order,
        ],
        tags=["orders"],
        security=[{"bearer": []}],
    )


def _admin_position(position: list | None) -> tuple[datetime, str] | None:
    """The (created_at, id) of the last order of the previous page, from its cursor."""
    if position is None:
        return None
    try:
        created_at, order_id = position
        after = datetime.fromisoformat(created_at), order_id
    except (TypeError, ValueError):
        after = None
    if after is None or after[0].tzinfo is None or not isinstance(order_id, str):
        raise Unprocessable("The cursor is not valid", [FieldError(["query", "cursor"], "invalid")])
    return after
