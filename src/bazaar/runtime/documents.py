"""The API's OpenAPI documents, made from the services' routes, never kept by hand: each
service's own, and the whole API's, every service's merged under a tag of its own. Every API
process serves the whole API's at `/openapi.json` and `/docs`, so the front door documents
every service whichever instance answers (`bazaar up`'s HAProxy and the Ingress send the
documents to catalog's)."""

import functools
import importlib
import inspect
from collections.abc import Sequence
from typing import cast

from litestar import Controller

from bazaar.platform.documents import describe, merge
from bazaar.platform.openapi import Document
from bazaar.runtime.services import SERVICES

TITLE = "Bazaar"


def controllers(service: str) -> Sequence[type[Controller]]:
    """The routes of `service`: the `CONTROLLERS` of its `api` module, as each service's
    package has one."""
    api = importlib.import_module(f"bazaar.{service}.api")
    return cast(Sequence[type[Controller]], api.CONTROLLERS)


@functools.cache
def service_document(service: str) -> Document:
    """`service`'s own document, as `bazaar serve <service>` would publish its routes alone."""
    return describe(f"{TITLE} {service}", controllers(service))


@functools.cache
def api_document() -> Document:
    """Every service's document in one, each service's operations under its tag, described by
    the docstring of its package. Shared: not to be changed."""
    tags = {
        service: inspect.getdoc(importlib.import_module(f"bazaar.{service}")) or service
        for service in SERVICES
    }
    return merge(TITLE, {service: service_document(service) for service in SERVICES}, tags)
