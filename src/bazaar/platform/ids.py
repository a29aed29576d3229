"""Identifiers: time-ordered UUIDv7 strings, so that ids sort by creation and index well."""

import uuid_utils


def new_id() -> str:
    """A new unique, time-ordered id."""
    return str(uuid_utils.uuid7())
