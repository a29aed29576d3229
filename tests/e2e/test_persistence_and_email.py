"""`bazaar dev` keeps its data across a restart, and sends email through a real SMTP server
when BAZAAR_SMTP_URL names one."""

import asyncio
import socket
from email import message_from_bytes
from pathlib import Path

import httpx
from aiosmtpd.controller import Controller

from bazaar.runtime.embedded import Runtime
from tests.e2e.checkout import create_product, eventually, place_order, settled
from tests.plugin import admin as make_admin
from tests.plugin import customer, login, settings_for


def client_for(runtime: Runtime) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=runtime.app())
    return httpx.AsyncClient(transport=transport, base_url="http://bazaar.test")


async def test_data_and_signing_key_survive_a_restart(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "data")
    first = Runtime(settings)
    await first.start()
    try:
        async with client_for(first) as client:
            admin = await make_admin(first, client)
            ada = await customer(client)
            product = await create_product(client, admin, stock=3)
            placed = await place_order(client, ada, [{"product_id": product["id"], "quantity": 1}])
            order = await settled(client, ada, placed.json()["id"])
    finally:
        await first.stop()

    second = Runtime(settings)
    await second.start()
    try:
        async with client_for(second) as client:
            # the old access token still verifies: the signing key was kept
            again = await client.get(f"/v1/orders/{order['id']}", headers=ada)
            assert again.status_code == 200 and again.json() == order
            assert (await client.get(f"/v1/products/{product['id']}")).json()["stock"] == 2
            await login(client)
    finally:
        await second.stop()


class Inbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, _server, _session, envelope) -> str:
        self.messages.append(envelope.content)
        return "250 OK"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_order_email_goes_to_the_smtp_server(tmp_path: Path) -> None:
    inbox = Inbox()
    port = free_port()
    smtp = Controller(inbox, hostname="127.0.0.1", port=port)
    smtp.start()
    runtime = Runtime(settings_for(tmp_path / "data", BAZAAR_SMTP_URL=f"smtp://127.0.0.1:{port}"))
    await runtime.start()
    try:
        async with client_for(runtime) as client:
            admin = await make_admin(runtime, client)
            ada = await customer(client)
            product = await create_product(client, admin, stock=3)
            placed = await place_order(
                client, ada, [{"product_id": product["id"], "quantity": 1}], "pm_card_declined"
            )
            order = await settled(client, ada, placed.json()["id"])

            async def received() -> list[bytes]:
                await asyncio.sleep(0)
                return inbox.messages

            messages = await eventually(received)
            await asyncio.sleep(0.3)  # a second email would arrive by now
    finally:
        await runtime.stop()
        smtp.stop()
    assert len(inbox.messages) == 1
    email = message_from_bytes(messages[0])
    assert "ada@example.com" in email["To"]
    assert order["id"] in messages[0].decode()
    assert not list((tmp_path / "data").glob("mail/*.eml"))  # sent, not written to disk
