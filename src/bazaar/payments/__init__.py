"""Payments: charges through a provider adapter, idempotency, ledger entries, refunds."""

from bazaar.platform.service import ServiceDefinition

DEFINITION = ServiceDefinition(name="payments", routes=("/v1/payments",), database="payments")
