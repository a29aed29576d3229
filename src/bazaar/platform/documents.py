"""The OpenAPI documents of several services: each one's, made from its routes alone (no
database, key or process of its own needed), and one document of all of them, merged."""

import copy
import functools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from litestar import Controller, Litestar, Router
from litestar.di import Provide
from litestar.routes import HTTPRoute

from bazaar.platform.openapi import Document, openapi_config, published

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
"""The keys of a path item that are operations."""
_SCHEMAS = "#/components/schemas/"


def describe(title: str, controllers: Sequence[type[Controller]]) -> Document:
    """The document of `controllers`' routes as a service's own app publishes it
    (`openapi.published`), made without that app: what the routes are given per request
    (sessions, keys) needs the service's databases and keys, which a process that runs other
    services has not. No request reaches these routes, so each dependency they name is a
    placeholder that is never called."""
    router = Router("/", route_handlers=list(controllers))
    placeholders = {name: _placeholder(name) for name in _named(router)}
    app: Litestar

    @functools.cache
    def document() -> Document:
        return published(app)

    app = Litestar(
        route_handlers=[router],
        dependencies=placeholders,
        openapi_config=openapi_config(title, document),
        logging_config=None,
        debug=False,
    )
    return document()


def _named(router: Router) -> set[str]:
    """The dependencies that `router`'s route functions take."""
    return {
        parameter.name
        for route in router.routes
        if isinstance(route, HTTPRoute)
        for handler in route.route_handlers
        for parameter in handler.parsed_fn_signature.parameters.values()
        if parameter.is_di_field
    }


def _placeholder(name: str) -> Provide:
    """A provider of `name` that is never called (one function each: Litestar refuses a
    provider under two names)."""

    def never_called() -> None:
        raise RuntimeError(f"{name} asked of a route described for its documentation only")

    return Provide(never_called, sync_to_thread=False)


def merge(title: str, documents: Mapping[str, Document], tags: Mapping[str, str]) -> Document:
    """One document of several services' own (`documents` by service name, listed in that
    order; `tags` describes each service).

    Every operation is tagged with its service's name first. Components are pooled: a schema
    that several services name alike with the same content is kept once; with different
    contents, each service's is renamed `<Service><Name>` (orders' `Money`, `OrdersMoney`) and
    that service's references follow it. A path and method, or an `operationId`, found in two
    documents is a ValueError, as is any other component named alike with different contents.
    """
    versions = {(d["openapi"], d["info"]["version"]) for d in documents.values()}
    if len(versions) != 1:
        raise ValueError(f"the documents are of different versions: {sorted(versions)}")
    ((openapi, version),) = versions
    clashing = _clashing_schemas(documents)
    merged: Document = {
        "openapi": openapi,
        "info": {"title": title, "version": version},
        "servers": [{"url": "/"}],
        "paths": {},
        "components": {},
        "tags": [{"name": service, "description": tags[service]} for service in documents],
    }
    operation_ids: dict[str, str] = {}
    for service, own in documents.items():
        renames = {
            name: f"{service.capitalize()}{name}"
            for name in own.get("components", {}).get("schemas", {})
            if name in clashing
        }
        document = _renamed(copy.deepcopy(own), renames)
        for kind, entries in document.get("components", {}).items():
            _pool(merged["components"].setdefault(kind, {}), entries, f"components.{kind}")
        for path, item in document.get("paths", {}).items():
            _add_path(merged["paths"].setdefault(path, {}), path, item, service, operation_ids)
    return merged


def _clashing_schemas(documents: Mapping[str, Document]) -> set[str]:
    """The schema names that two documents give different contents."""
    seen: dict[str, list[Any]] = {}
    for document in documents.values():
        for name, schema in document.get("components", {}).get("schemas", {}).items():
            contents = seen.setdefault(name, [])
            if schema not in contents:
                contents.append(schema)
    return {name for name, contents in seen.items() if len(contents) > 1}


def _renamed(document: Document, renames: Mapping[str, str]) -> Document:
    """`document` with its schemas named anew (`renames`), and every reference to them."""
    if not renames:
        return document
    schemas = document["components"]["schemas"]
    document["components"]["schemas"] = {
        renames.get(name, name): schema for name, schema in schemas.items()
    }
    references = {_SCHEMAS + old: _SCHEMAS + new for old, new in renames.items()}

    def rewrite(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: rewrite(item) for key, item in value.items()}
        if isinstance(value, list):
            return [rewrite(item) for item in value]
        if isinstance(value, str):
            return references.get(value, value)
        return value

    renamed: Document = rewrite(document)
    return renamed


def _pool(pooled: dict[str, Any], entries: Mapping[str, Any], where: str) -> None:
    for name, entry in entries.items():
        if pooled.setdefault(name, entry) != entry:
            raise ValueError(f"{where}.{name} is defined twice, differently")


def _add_path(
    merged: dict[str, Any],
    path: str,
    item: Mapping[str, Any],
    service: str,
    operation_ids: dict[str, str],
) -> None:
    for key, value in item.items():
        if key not in METHODS:
            _pool(merged, {key: value}, path)
            continue
        if key in merged:
            raise ValueError(f"{key.upper()} {path} is in two documents")
        operation_id = value.get("operationId")
        if operation_id is None:
            raise ValueError(f"{key.upper()} {path} ({service}) has no operationId")
        if operation_id in operation_ids:
            other = operation_ids[operation_id]
            raise ValueError(f"operationId {operation_id} is {other}'s and {service}'s")
        operation_ids[operation_id] = service
        own_tags = [tag for tag in value.get("tags", []) if tag != service]
        merged[key] = {**value, "tags": [service, *own_tags]}


def operations(document: Document) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(method, path, operation) of every operation of `document`."""
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if method in METHODS:
                yield method, path, operation
