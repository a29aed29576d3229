"""Where webhooks may point: private addresses refused when registered and when delivered
(DNS rebinding), unless the operator allows them; the sender connects to the checked address."""

import contextlib
import ipaddress
import socket

import pytest

from bazaar.notifications import webhook_targets, webhooks
from bazaar.notifications.models import DeliveryStatus
from bazaar.notifications.settings import NotificationsSettings
from bazaar.notifications.webhook_sender import WebhookSender
from bazaar.platform.db import Database
from bazaar.platform.errors import Unavailable, Unprocessable
from bazaar.platform.job_worker import JobWorker
from bazaar.platform.settings import Env
from tests.notifications.conftest import CONFIRMED, FAST, Receiver, deliveries, publish

PUBLIC = "93.184.215.14"


async def refusal(url: str, settings: NotificationsSettings) -> str:
    """Why registering `url` is 422, as the client reads it under `url`."""
    with pytest.raises(Unprocessable) as refused:
        await webhook_targets.check_url(url, settings)
    [error] = refused.value.errors
    assert error.loc == ["body", "url"]
    return error.msg


@pytest.fixture
def strict() -> NotificationsSettings:
    """The defaults of production: private addresses are refused."""
    return NotificationsSettings.from_env(Env({**FAST, "BAZAAR_WEBHOOK_ALLOW_PRIVATE": "false"}))


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """A resolver the test fills in: a name maps to its addresses; any other is not found."""
    records: dict[str, list[str]] = {}

    async def resolve(host: str, port: int) -> list[webhook_targets.IPAddress]:
        if host not in records:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [ipaddress.ip_address(address) for address in records[host]]

    monkeypatch.setattr(webhook_targets, "resolve", resolve)
    return records


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://localhost/",
        "http://app.localhost:8000/hooks",
        "http://10.0.0.1/",
        "http://172.16.5.4/",
        "http://192.168.1.1/",
        "http://[::1]/",
        "http://[fd00::1]/",
        "http://[fe80::1]/",
        "http://169.254.169.254/latest/meta-data",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://[64:ff9b::7f00:1]/",
        "http://[2002:7f00:1::]/",
        "http://0.0.0.0/",
        "http://[::]/",
        "http://100.64.0.1/",
        "http://224.0.0.1/",
        "http://[ff02::1]/",
        "http://240.0.0.1/",
        "http://255.255.255.255/",
    ],
)
async def test_a_private_or_special_address_is_refused(
    url: str, strict: NotificationsSettings
) -> None:
    assert " is " in await refusal(url, strict)


@pytest.mark.parametrize("url", ["http://127.1/", "http://2130706433/", "http://0x7f000001/"])
async def test_other_spellings_of_loopback_are_refused_once_resolved(
    url: str, strict: NotificationsSettings
) -> None:
    assert "resolves to 127.0.0.1, which is a loopback address" in await refusal(url, strict)


async def test_localhost_resolves_to_loopback() -> None:
    addresses = await webhook_targets.resolve("localhost", 80)
    assert addresses and all(address.is_loopback for address in addresses)


@pytest.mark.parametrize(
    "url",
    [
        f"http://{PUBLIC}/hook",
        "https://[2606:2800:220:1:248:1893:25c8:1946]:8443/hook",
        f"http://[::ffff:{PUBLIC}]/hook",
    ],
)
async def test_a_public_address_is_accepted(url: str, strict: NotificationsSettings) -> None:
    assert await webhook_targets.check_url(url, strict) == url


async def test_a_name_is_judged_by_every_address_it_resolves_to(
    strict: NotificationsSettings, dns: dict[str, list[str]]
) -> None:
    dns["hooks.example.com"] = [PUBLIC]
    dns["inside.example.com"] = ["10.1.2.3"]
    dns["both.example.com"] = [PUBLIC, "127.0.0.1"]
    assert await webhook_targets.check_url("https://hooks.example.com/h", strict)
    assert await refusal("https://inside.example.com/h", strict) == (
        "inside.example.com resolves to 10.1.2.3, which is a private address"
    )
    assert "127.0.0.1, which is a loopback address" in await refusal(
        "https://both.example.com/h", strict
    )


async def test_a_name_that_does_not_exist_is_422_and_a_dns_outage_503(
    strict: NotificationsSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    failure = socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    async def resolve(host: str, port: int) -> list[webhook_targets.IPAddress]:
        raise failure

    monkeypatch.setattr(webhook_targets, "resolve", resolve)
    assert await refusal("https://nowhere.example/h", strict) == "nowhere.example has no address"
    failure = socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
    with pytest.raises(Unavailable):
        await webhook_targets.check_url("https://nowhere.example/h", strict)


async def test_allowing_private_addresses_still_refuses_cloud_metadata(
    settings: NotificationsSettings,
) -> None:
    assert settings.webhook_allow_private
    for url in ("http://127.0.0.1:8000/h", "http://10.0.0.1/", "http://unresolvable.test/"):
        assert await webhook_targets.check_url(url, settings) == url
    for url in ("http://169.254.169.254/", "http://[fd00:ec2::254]/", "http://metadata/"):
        assert "metadata" in await refusal(url, settings)


async def test_a_host_rebound_to_a_private_address_is_not_delivered(
    db: Database,
    strict: NotificationsSettings,
    receiver: Receiver,
    dns: dict[str, list[str]],
) -> None:
    dns["hooks.example.com"] = [PUBLIC]
    url = f"http://hooks.example.com:{receiver.port}/hooks"
    async with db.write() as session:
        await webhooks.create_webhook(session, url, ["order.confirmed"], strict)
    dns["hooks.example.com"] = ["127.0.0.1"]  # where the receiver listens
    await publish(db, CONFIRMED)
    sender = WebhookSender(db, strict)
    worker = JobWorker(db, [sender])
    async with contextlib.aclosing(sender):
        assert await worker.run_due() == 1
        assert await worker.run_due() == 0  # refused for good, never retried
    [delivery] = await deliveries(db)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
        DeliveryStatus.FAILED,
        0,
        None,
    )
    assert delivery.last_error == (
        "refused: hooks.example.com resolves to 127.0.0.1, which is a loopback address"
    )
    assert receiver.requests == []


async def test_the_sender_connects_to_the_address_it_checked(
    db: Database,
    settings: NotificationsSettings,
    receiver: Receiver,
    dns: dict[str, list[str]],
) -> None:
    receiver.statuses = []
    dns["receiver.test"] = ["127.0.0.1"]  # a name no real resolver knows
    url = f"http://receiver.test:{receiver.port}/hooks"
    async with db.write() as session:
        await webhooks.create_webhook(session, url, ["order.confirmed"], settings)
    await publish(db, CONFIRMED)
    sender = WebhookSender(db, settings)
    worker = JobWorker(db, [sender])
    async with contextlib.aclosing(sender):
        assert await worker.run_due() == 1
    [delivery] = await deliveries(db)
    assert delivery.status == DeliveryStatus.DELIVERED
    [(headers, _body)] = receiver.requests
    assert headers["host"] == f"receiver.test:{receiver.port}"


async def test_a_redirect_is_not_followed(
    db: Database, settings: NotificationsSettings, receiver: Receiver
) -> None:
    receiver.statuses = [307]
    async with db.write() as session:
        await webhooks.create_webhook(session, receiver.url, ["order.confirmed"], settings)
    await publish(db, CONFIRMED)
    sender = WebhookSender(db, settings)
    worker = JobWorker(db, [sender])
    async with contextlib.aclosing(sender):
        assert await worker.run_due() == 1
    [delivery] = await deliveries(db)
    assert (delivery.status, delivery.last_status_code) == (DeliveryStatus.PENDING, 307)
    assert len(receiver.requests) == 1
