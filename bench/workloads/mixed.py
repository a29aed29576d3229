"""A storefront's day for Locust: mostly browsing (product pages, listings, searches), some
carts and orders, some logins. Each simulated visitor pauses between steps as a person does;
`bazaar bench` sets how many visitors."""

import random

from locust import between, task
from shopper import CATEGORIES, SEARCH_WORDS, STOCKED, Shopper, popular_product


class Visitor(Shopper):
    wait_time = between(0.05, 0.25)

    @task(60)
    def product_page(self) -> None:
        self.client.get(f"/v1/products/{popular_product()}", name="GET /v1/products/{id}")

    @task(15)
    def category_listing(self) -> None:
        category = random.choice(CATEGORIES)
        self.client.get(f"/v1/products?limit=20&category={category}", name="GET /v1/products")

    @task(5)
    def search(self) -> None:
        word = random.choice(SEARCH_WORDS)
        self.client.get(f"/v1/products?limit=20&q={word}", name="GET /v1/products?q=")

    @task(8)
    def add_to_cart(self) -> None:
        product = random.choice(STOCKED)
        self.client.put(
            f"/v1/cart/items/{product}",
            json={"quantity": random.randint(1, 3)},
            headers=self.auth,
            name="PUT /v1/cart/items/{id}",
        )
        self.client.get("/v1/cart", headers=self.auth, name="GET /v1/cart")

    @task(4)
    def order_the_cart(self) -> None:
        cart = self.client.get("/v1/cart", headers=self.auth, name="GET /v1/cart")
        if cart.status_code == 200 and cart.json()["items"]:
            order_id = self.place_order(None)
            if order_id is not None:
                self.wait_settled(order_id)

    @task(3)
    def my_orders(self) -> None:
        self.client.get("/v1/orders?limit=10", headers=self.auth, name="GET /v1/orders")

    @task(2)
    def log_in_again(self) -> None:
        self.log_in()
