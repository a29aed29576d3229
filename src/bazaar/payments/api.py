"""Payments' HTTP routes: show a payment, refund one."""

from typing import Annotated

import msgspec
from litestar import Response, Router, get, post
from litestar.params import Body, PathParameter
from litestar.status_codes import HTTP_200_OK

from bazaar.payments import service
from bazaar.payments.models import Payment
from bazaar.payments.provider import PaymentProvider
from bazaar.payments.schemas import PaymentRead, RefundRequest
from bazaar.payments.settings import PaymentsSettings
from bazaar.platform.db import Database, WriteSession
from bazaar.platform.idempotency import Idempotency, KeyHeader, check_key, fingerprint
from bazaar.platform.openapi import problems
from bazaar.platform.web import CurrentUser, json_response


def read(payment: Payment) -> PaymentRead:
    return PaymentRead(
        id=payment.id,
        order_id=payment.order_id,
        status=payment.status,
        amount=payment.total,
        refunded_amount=payment.refunded,
        created_at=payment.created_at,
    )


PaymentId = Annotated[str, PathParameter(description="The payment's id")]


def create_router(
    db: Database, provider: PaymentProvider, settings: PaymentsSettings, idempotency: Idempotency
) -> Router:
    @get(
        "/payments/{payment_id:str}",
        summary="A payment (its customer or an admin)",
        responses=problems(404),
    )
    async def show_payment(payment_id: PaymentId, user: CurrentUser) -> PaymentRead:
        payment = await db.read_by_id(
            lambda session: service.get_payment(session, user, payment_id)
        )
        return read(payment)

    @post(
        "/payments/{payment_id:str}/refund",
        status_code=HTTP_200_OK,
        summary="Refund a payment, in part or in full (admin)",
        responses=problems(403, 404, 409),
    )
    async def refund_payment(
        payment_id: PaymentId,
        user: CurrentUser,
        idempotency_key: KeyHeader = None,
        data: Annotated[
            RefundRequest | None,
            Body(description="`amount` defaults to all that is left; the body may be empty"),
        ] = None,
    ) -> Response[PaymentRead]:
        user.require_admin()
        key = check_key(idempotency_key)
        amount = data.amount if data is not None else None
        request_fingerprint = fingerprint(payment_id, msgspec.json.encode(amount))

        async def work(session: WriteSession) -> tuple[int, bytes]:
            payment = await service.refund_payment(
                session,
                provider,
                settings,
                payment_id=payment_id,
                amount=amount,
                idempotency_key=f"refund:{payment_id}:{user.id}:{key}",
            )
            return HTTP_200_OK, msgspec.json.encode(read(payment))

        scope = f"payments:{user.id}"
        stored = await idempotency.run_once(db, scope, key, request_fingerprint, work)
        headers = {"Idempotent-Replayed": "true"} if stored.replayed else None
        return json_response(stored.body, stored.status, headers)

    return Router(
        "/v1",
        route_handlers=[show_payment, refund_payment],
        tags=["payments"],
        security=[{"bearer": []}],
    )
