"""One checkout is one trace: the order's POST, the reservation, the payment, the
confirmation, the notification and its email, every span exported by OTLP to a receiver
standing in for a collector, on the in-process bus and on RabbitMQ."""

import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from bazaar.notifications.service import EMAIL_JOB
from bazaar.platform import tracing
from bazaar.platform.schema import job
from bench.otlp import ReceivedSpan, Receiver, otlp_receiver, tree
from tests.e2e.checkout import create_product, eventually, place_order, settled
from tests.plugin import admin, customer, started
from tests.postgres import require_server
from tests.scaled import ScaledServers

SAGA = [
    "POST /v1/orders",
    "catalog.reserve_stock process order.placed",
    "payments.capture_payment process stock.reserved",
    "orders process payment.succeeded",
    "notifications process order.confirmed",
    "job email",
]
"""The spans of the checkout's hops, each the parent of the next."""


@pytest.fixture(params=["embedded", "rabbitmq"])
async def traced_checkout(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Receiver, str]]:
    """A checkout on a runtime that traces every span to a receiver; the receiver once the
    runtime stopped (its spans all exported) and the order's id."""
    extra: dict[str, str] = {}
    if request.param == "rabbitmq":
        await require_server()
        servers: ScaledServers = request.getfixturevalue("scaled_servers")
        extra = servers.environment()
    data = tmp_path / "data"
    with otlp_receiver() as (receiver, url):
        async with started(
            data, on_servers=bool(extra), BAZAAR_OTLP_ENDPOINT=url, **extra
        ) as runtime:
            assert tracing.active() is runtime.tracing is not None
            transport = httpx.ASGITransport(app=runtime.app())
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                headers = await admin(runtime, client)
                ada = await customer(client)
                product = await create_product(client, headers, stock=2)
                placed = await place_order(
                    client, ada, [{"product_id": product["id"], "quantity": 1}]
                )
                assert placed.status_code == 202, placed.text
                order_id = placed.json()["id"]
                assert (await settled(client, ada, order_id))["status"] == "confirmed"

                async def emailed() -> bool:
                    sent = any(order_id in mail.read_text() for mail in data.glob("mail/*.eml"))
                    notifications = runtime.platform.databases["notifications"]
                    async with notifications.read(fresh=True) as session:
                        queued = select(func.count()).where(job.c.kind == EMAIL_JOB)
                        return sent and (await session.execute(queued)).scalar_one() == 0

                await eventually(emailed)  # written, and the job done (its row gone)
        assert tracing.active() is None  # stopped: the buffered spans went out
        yield receiver, order_id


def the_trace(receiver: Receiver) -> list[ReceivedSpan]:
    posts = [span for span in receiver.spans if span.name == "POST /v1/orders"]
    assert len(posts) == 1, sorted(
        {(span.name, span.kind) for span in receiver.spans if span.kind != 3}
    )
    return receiver.trace(posts[0].trace_id)


async def test_a_checkout_is_one_trace_from_the_order_to_its_email(
    traced_checkout: tuple[Receiver, str],
) -> None:
    receiver, order_id = traced_checkout
    spans = the_trace(receiver)
    print(f"\n{len(spans)} spans of one checkout:\n{tree(spans)}")
    by_name = {span.name: span for span in spans}
    hops = [by_name.get(name) for name in SAGA]
    assert all(hops), [name for name, hop in zip(SAGA, hops, strict=True) if hop is None]
    # each hop is the child of the one before: the context crossed the outbox, the bus and
    # the job queue
    assert hops[0] is not None and hops[0].parent_id is None
    for parent, child in itertools.pairwise(hops):
        assert child is not None and parent is not None
        assert child.parent_id == parent.span_id, (child.name, parent.name)
    # one tree: a single root, every other span's parent in the trace
    ids = {span.span_id for span in spans}
    assert [span.name for span in spans if span.parent_id not in ids] == ["POST /v1/orders"]
    # every event of the order, published or handled, is in this trace and no other
    of_order = [
        span for span in receiver.spans if span.attributes.get("bazaar.event.key") == order_id
    ]
    assert {span.trace_id for span in of_order} == {spans[0].trace_id}
    published = {span.name for span in of_order if span.name.startswith("publish ")}
    assert {"publish order.placed", "publish order.confirmed"} <= published
    # every hop ran statements, each a span of its own under the hop
    statements = [
        span
        for span in spans
        if "db.statement" in span.attributes or "db.query.text" in span.attributes
    ]
    assert all(hop.span_id in {s.parent_id for s in statements} for hop in hops if hop)
    assert not [(span.name, span.attributes) for span in spans if span.error]
    services = {span.attributes["resource"]["service.name"] for span in spans}
    assert services == {"bazaar"}
