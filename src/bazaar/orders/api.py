"""Orders' HTTP routes: the cart, placing orders (idempotent), reading and cancelling them.

A customer's cart and orders live on their shard; an order id names its shard, so an order is
found from its id alone. Each route is given the unit of work or the session of the shard it
concerns (`dependencies`): the one the path's order id names, else the caller's.
"""

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, delete, get, post, put
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED

from bazaar.orders import listing, service
from bazaar.orders.cart import PricedCart, put_in_cart, show_cart, take_out_of_cart
from bazaar.orders.models import Order
from bazaar.orders.prices import CatalogPrices
from bazaar.orders.schemas import (
    AdminOrderRead,
    CartItemUpdate,
    CartRead,
    LineRead,
    OrderRead,
    PlaceOrderRequest,
)
from bazaar.orders.work import OrdersWork
from bazaar.platform.db import Database
from bazaar.platform.errors import FieldError, NotFound, Unprocessable
from bazaar.platform.idempotency import Claim, Idempotency, idempotent
from bazaar.platform.openapi import problems
from bazaar.platform.pagination import Cursor, Limit, Page, decode_cursor, page_of
from bazaar.platform.shards import ShardedDatabase
from bazaar.platform.unit_of_work import (
    AnyRequest,
    Caller,
    ReadOnly,
    Transaction,
    provide_reader,
    provide_session,
    provide_work,
)
from bazaar.platform.web import BEARER, CurrentUser

StatusFilter = Annotated[
    Literal["pending", "confirmed", "cancelled"] | None,
    Parameter(description="Only orders in this status."),
]
CustomerFilter = Annotated[
    str | None,
    Parameter(max_length=36, description="Only this customer's orders (reads one shard)."),
]
Work = NamedDependency[OrdersWork]


def dependencies(
    shards: ShardedDatabase, prices: CatalogPrices, idempotency: Idempotency
) -> dict[str, Provide]:
    """What orders' routes are given per request: `work` (an `OrdersWork`), `session` and
    `reader`, on the shard the path's order id names, else on the caller's."""

    def shard(request: AnyRequest, user: Caller) -> Database:
        order_id = request.path_params.get("order_id")
        if order_id is None:
            if user is None:
                raise RuntimeError("every orders route has a signed-in caller")
            return shards.for_customer(user.id)
        db = shards.for_id(order_id)
        if db is None:
            raise NotFound("No such order")
        return db

    def work(request: AnyRequest, user: Caller, claim: Claim | None) -> OrdersWork:
        return OrdersWork(shard(request, user), shards, prices, claim=claim)

    return {
        "work": provide_work(work, idempotency),
        "session": provide_session(shard),
        "reader": provide_reader(shard),
    }


class CartController(Controller):
    path = "/v1/cart"
    tags = ["orders"]
    security = BEARER

    @get("/", summary="The caller's cart at current catalog prices", responses=problems(409))
    async def get_cart(self, user: CurrentUser, work: Work) -> CartRead:
        return cart_read(await show_cart(work, user.id))

    @put(
        "/items/{product_id:str}",
        status_code=HTTP_200_OK,
        summary="Set the quantity of a product in the cart",
        responses=problems(404, 409),
    )
    async def set_cart_item(
        self,
        user: CurrentUser,
        product_id: FromPath[str],
        data: JSONBody[CartItemUpdate],
        work: Work,
    ) -> CartRead:
        return cart_read(await put_in_cart(work, user.id, product_id, data.quantity))

    @delete(
        "/items/{product_id:str}",
        status_code=HTTP_200_OK,
        summary="Take a product out of the cart",
        responses=problems(409),
    )
    async def remove_cart_item(
        self, user: CurrentUser, product_id: FromPath[str], work: Work
    ) -> CartRead:
        return cart_read(await take_out_of_cart(work, user.id, product_id))


class OrderController(Controller):
    path = "/v1"
    tags = ["orders"]
    security = BEARER

    @post(
        "/orders",
        status_code=HTTP_202_ACCEPTED,
        summary="Place an order: it starts pending while stock and payment are settled",
        responses=problems(409),
        opt=idempotent("orders"),
    )
    async def place_order(
        self, user: CurrentUser, data: JSONBody[PlaceOrderRequest], work: Work
    ) -> OrderRead:
        return order_read(await service.check_out(work, user.id, new_order(data)))

    @get("/orders", summary="The caller's orders, newest first")
    async def list_orders(
        self, user: CurrentUser, reader: ReadOnly, limit: Limit = 20, cursor: Cursor = None
    ) -> Page[OrderRead]:
        before = _customer_position(decode_cursor(cursor))
        found = await listing.list_orders(reader, user.id, limit, before)
        page = page_of(found, limit, lambda order: (order.id,))
        return Page(items=[order_read(order) for order in page.items], next_cursor=page.next_cursor)

    @get(
        "/admin/orders",
        summary="Every customer's orders across the shards, newest first (admin)",
        responses=problems(403),
    )
    async def list_all_orders(
        self,
        user: CurrentUser,
        work: Work,
        limit: Limit = 20,
        cursor: Cursor = None,
        status: StatusFilter = None,
        customer_id: CustomerFilter = None,
    ) -> Page[AdminOrderRead]:
        user.require_admin()
        after = _admin_position(decode_cursor(cursor))
        found = await service.list_all_orders(
            work, limit, after, status=status, customer_id=customer_id
        )
        page = page_of(found, limit, lambda order: (order.created_at.isoformat(), order.id))
        return Page([admin_order_read(order) for order in page.items], page.next_cursor)

    @get(
        "/orders/{order_id:str}",
        summary="One order (its owner or an admin)",
        responses=problems(404),
    )
    async def get_order(self, user: CurrentUser, order_id: FromPath[str], work: Work) -> OrderRead:
        order = await service.get_order(work.db, order_id, user)
        return order_read(order)

    @post(
        "/orders/{order_id:str}/cancel",
        status_code=HTTP_200_OK,
        summary="Cancel an order (its owner or an admin); a confirmed order is refunded",
        responses=problems(404, 409),
    )
    async def cancel_order(
        self, user: CurrentUser, order_id: FromPath[str], session: Transaction
    ) -> OrderRead:
        return order_read(await service.cancel_order(session, order_id, user))


CONTROLLERS = [CartController, OrderController]


def new_order(data: PlaceOrderRequest) -> service.NewOrder:
    address = data.shipping_address
    return service.NewOrder(
        lines=None
        if data.items is None
        else [service.Line(item.product_id, item.quantity) for item in data.items],
        payment_method=data.payment_method,
        shipping_address=service.Address(
            name=address.name,
            line1=address.line1,
            city=address.city,
            postal_code=address.postal_code,
            country=address.country,
            line2=address.line2,
        ),
    )


def cart_read(cart: PricedCart) -> CartRead:
    lines = [LineRead(line.product_id, line.quantity, line.unit_price) for line in cart.items]
    return CartRead(items=lines, total=cart.total)


def order_read(order: Order | listing.OrderView) -> OrderRead:
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


def _customer_position(position: list[Any] | None) -> str | None:
    """The id of the last order of the previous page, from its cursor."""
    if position is None:
        return None
    if not (len(position) == 1 and isinstance(position[0], str)):
        raise Unprocessable("The cursor is not valid", [FieldError(["query", "cursor"], "invalid")])
    return position[0]


def _admin_position(position: list[Any] | None) -> tuple[datetime, str] | None:
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
