"""Payments: charges through a provider adapter, idempotency, ledger entries, refunds."""
