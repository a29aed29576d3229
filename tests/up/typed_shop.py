"""The checkout through a client generated from the API's document (tests/generated_client.py):
every step one of its typed operations, called by its `operationId`, as a client's author
would write it."""

import uuid
from typing import Any

import httpx

from chaos.shop import ADDRESS, PASSWORD
from tests.generated_client import GeneratedClient
from tests.up.running import wait_for

SETTLE_BOUND = 30.0


def checkout(api: GeneratedClient, base: str, admin: dict[str, str]) -> Any:
    """A new customer registers, logs in, puts 2 units of a product an admin made in the cart
    and orders the cart with an Idempotency-Key (sent twice: one order); the order once the
    saga has settled it, and the checks of each answer on the way."""
    models = api.models
    anonymous = api.client(base)
    email = f"typed-{uuid.uuid4().hex[:8]}@example.com"
    registered = api.operation("identity", "register_user").sync_detailed(
        client=anonymous, body=models.RegisterRequest(email=email, password=PASSWORD, name="Ty")
    )
    assert registered.status_code == 201, registered.content
    assert (registered.parsed.email, registered.parsed.role) == (email, "customer")
    login = models.LoginRequest(email=email, password=PASSWORD)
    tokens = api.operation("identity", "login").sync(client=anonymous, body=login)
    assert isinstance(tokens, models.TokenPair), tokens
    customer = api.client(base, tokens.access_token)
    operator = api.client(base, httpx.Headers(admin)["authorization"].removeprefix("Bearer "))

    price = models.Price(amount=1999, currency="USD")
    new_product = models.ProductCreate(
        sku=f"TYPED-{uuid.uuid4().hex[:8]}", name="Lamp", category="lighting", price=price, stock=5
    )
    product = api.operation("catalog", "create_product").sync(client=operator, body=new_product)
    assert isinstance(product, models.ProductRead), product
    cart = api.operation("orders", "set_cart_item").sync(
        client=customer, product_id=product.id, body=models.CartItemUpdate(quantity=2)
    )
    assert isinstance(cart, models.CartRead), cart
    assert (cart.total.amount, cart.total.currency) == (3998, "USD")

    place_order = api.operation("orders", "place_order")
    order = models.PlaceOrderRequest(
        payment_method="pm_card_visa", shipping_address=models.ShippingAddress(**ADDRESS)
    )
    key = uuid.uuid4().hex
    placed = place_order.sync_detailed(client=customer, body=order, idempotency_key=key)
    assert placed.status_code == 202, placed.content
    assert placed.parsed.status == "pending"
    again = place_order.sync_detailed(client=customer, body=order, idempotency_key=key)
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.parsed.id == placed.parsed.id

    get_order = api.operation("orders", "get_order")

    def settled() -> Any:
        now = get_order.sync(client=customer, order_id=placed.parsed.id)
        assert isinstance(now, models.OrderRead), now
        return now if now.status != "pending" else None

    settled_order = wait_for(settled, SETTLE_BOUND, f"order {placed.parsed.id} settled")
    payment = api.operation("payments", "get_payment").sync(
        client=customer, payment_id=settled_order.payment_id
    )
    assert isinstance(payment, models.PaymentRead), payment
    assert (payment.status, payment.amount.amount) == ("succeeded", 3998)
    emptied = api.operation("orders", "get_cart").sync(client=customer)
    assert emptied.items == []
    return settled_order
