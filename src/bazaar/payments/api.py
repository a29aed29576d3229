"""Payments' HTTP routes: show a payment, refund one (idempotent)."""

from typing import Annotated

from litestar import Controller, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import Body, PathParameter
from litestar.status_codes import HTTP_200_OK

from bazaar.payments import service
from bazaar.payments.models import Payment
from bazaar.payments.provider import PaymentProvider
from bazaar.payments.schemas import PaymentRead, RefundRequest
from bazaar.payments.service import PaymentsWork
from bazaar.payments.settings import PaymentsSettings
from bazaar.platform.db import Database
from bazaar.platform.idempotency import Claim, Idempotency, idempotent
from bazaar.platform.openapi import problems
from bazaar.platform.unit_of_work import AnyRequest, Caller, admin_only, provide_work
from bazaar.platform.web import BEARER, CurrentUser

PaymentId = Annotated[str, PathParameter(description="The payment's id")]
Work = NamedDependency[PaymentsWork]
RefundBody = Annotated[
    RefundRequest | None,
    Body(description="`amount` defaults to all that is left; the body may be empty"),
]


def dependencies(
    db: Database, provider: PaymentProvider, settings: PaymentsSettings, idempotency: Idempotency
) -> dict[str, Provide]:
    """What payments' routes are given per request: `work` (a `PaymentsWork`)."""

    def work(_request: AnyRequest, _user: Caller, claim: Claim | None) -> PaymentsWork:
        return PaymentsWork(db, provider, settings, claim=claim)

    return {"work": provide_work(work, idempotency)}


class PaymentController(Controller):
    path = "/v1/payments"
    tags = ["payments"]
    security = BEARER

    @get(
        "/{payment_id:str}",
        summary="A payment (its customer or an admin)",
        responses=problems(404),
    )
    async def get_payment(
        self, payment_id: PaymentId, user: CurrentUser, work: Work
    ) -> PaymentRead:
        payment = await work.read_by_id(
            lambda session: service.get_payment(session, user, payment_id)
        )
        return payment_read(payment)

    @post(
        "/{payment_id:str}/refund",
        status_code=HTTP_200_OK,
        summary="Refund a payment, in part or in full (admin)",
        responses=problems(403, 404, 409),
        opt=idempotent("payments") | admin_only(),
    )
    async def refund_payment(
        self, payment_id: PaymentId, user: CurrentUser, work: Work, data: RefundBody = None
    ) -> PaymentRead:
        user.require_admin()
        amount = data.amount if data is not None else None
        return payment_read(await service.refund_on_request(work, payment_id, amount, user.id))


CONTROLLERS = [PaymentController]


def payment_read(payment: Payment) -> PaymentRead:
    return PaymentRead(
        id=payment.id,
        order_id=payment.order_id,
        status=payment.status,
        amount=payment.total,
        refunded_amount=payment.refunded,
        created_at=payment.created_at,
    )
