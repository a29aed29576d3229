"""An app's OpenAPI document as it is published: operation ids named after the route
functions, the `Idempotency-Key` header where a route needs one, every error response as
problem+json (as the edge sends it), and the text rules of request bodies; and the pages that
serve a document (`/docs`, `/docs/openapi.json`)."""

from collections.abc import Callable
from typing import Any

from litestar import Litestar, Request
from litestar.enums import ParamType
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import (
    Components,
    OpenAPI,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Parameter,
    Reference,
    Schema,
    SecurityScheme,
)
from litestar.routes import HTTPRoute

from bazaar.platform.bodies import WITHOUT_CONTROLS
from bazaar.platform.idempotency import HEADER, HEADER_DESCRIPTION, OPTION
from bazaar.platform.problems import PROBLEM_JSON

JSON_ONLY = ("application/json",)
VERSION = "1.0.0"
Document = dict[str, Any]
"""An OpenAPI document, as JSON."""


_STATUS_TITLES = {
    400: "Bad Request: malformed JSON, a missing body, or a missing or invalid header",
    401: "Unauthorized: no or bad access token",
    403: "Forbidden: wrong role",
    404: "Not Found",
    409: "Conflict",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content: validation failed (see `errors`)",
    429: "Too Many Requests (see `Retry-After`)",
    503: "Service Unavailable: a dependency is down (see `Retry-After`)",
}
_RETRY_AFTER = {429, 503}
_PROBLEM_SCHEMA = Schema(
    type=OpenAPIType.OBJECT,
    required=["type", "title", "status", "detail"],
    properties={
        "type": Schema(type=OpenAPIType.STRING),
        "title": Schema(type=OpenAPIType.STRING),
        "status": Schema(type=OpenAPIType.INTEGER),
        "detail": Schema(type=OpenAPIType.STRING),
        "errors": Schema(
            type=OpenAPIType.ARRAY,
            items=Schema(
                type=OpenAPIType.OBJECT,
                required=["loc", "msg"],
                properties={
                    "loc": Schema(
                        type=OpenAPIType.ARRAY,
                        items=Schema(
                            one_of=[
                                Schema(type=OpenAPIType.STRING),
                                Schema(type=OpenAPIType.INTEGER),
                            ]
                        ),
                    ),
                    "msg": Schema(type=OpenAPIType.STRING),
                },
            ),
        ),
    },
    description="An RFC 9457 problem; `errors` lists the fields that failed validation.",
)


def problems(*statuses: int) -> dict[int, ResponseSpec]:
    """The `responses` of a route handler for the errors particular to it (403, 404, 409...).

    The errors every route may give (400, 401, 413, 415, 422, 503) are added to the document
    by the edge; each error response is described as `application/problem+json`.
    """
    return {
        status: ResponseSpec(None, description=_STATUS_TITLES[status], media_type=PROBLEM_JSON)
        for status in statuses
    }


def document_problems(openapi: OpenAPI) -> None:
    """Describe every error response as problem+json, with the errors every route may give."""
    schemas = openapi.components.schemas = dict(openapi.components.schemas or {})
    schemas["Problem"] = _PROBLEM_SCHEMA
    content = {PROBLEM_JSON: OpenAPIMediaType(schema=Reference("#/components/schemas/Problem"))}
    retry_after: dict[str, OpenAPIHeader | Reference] = {
        "Retry-After": OpenAPIHeader(schema=Schema(type=OpenAPIType.INTEGER))
    }
    for path_item in (openapi.paths or {}).values():
        for method in ("get", "put", "post", "delete", "patch"):
            operation = getattr(path_item, method)
            if operation is None:
                continue
            statuses = {503}
            if operation.security:
                statuses.add(401)
            if any(parameter.param_in != "path" for parameter in operation.parameters or ()):
                statuses |= {400, 422}
            if operation.request_body is not None:
                statuses |= {400, 413, 415}
                if JSON_ONLY[0] in (operation.request_body.content or {}):
                    statuses |= {400, 422}
            responses = operation.responses = dict(operation.responses or {})
            # Litestar's own 400 (its JSON error body) is dropped unless the rules above keep it
            statuses |= {
                int(code)
                for code, response in responses.items()
                if code.isdigit()
                and int(code) >= 400
                and not (isinstance(response, OpenAPIResponse) and response.content)
            }
            for code in [code for code in responses if code.isdigit() and int(code) >= 400]:
                del responses[code]
            for status in sorted(statuses):
                responses[str(status)] = OpenAPIResponse(
                    description=_STATUS_TITLES.get(status, "Error"),
                    content=content,
                    headers=retry_after if status in _RETRY_AFTER else None,
                )


def document_control_characters(document: dict[str, Any]) -> None:
    """Say in the document what every JSON body's decoding enforces (`bodies`): its strings hold
    no control character but tab and line breaks. A string schema of a request body without a
    pattern of its own gets that rule as its pattern; those with one already exclude them."""
    components = document.get("components", {}).get("schemas", {})
    seen: set[str] = set()

    def visit(schema: Any, patterned: bool = False) -> None:
        if isinstance(schema, list):
            for item in schema:
                visit(item, patterned)
            return
        if not isinstance(schema, dict):
            return
        if (ref := schema.get("$ref", "")).startswith("#/components/schemas/"):
            name = ref.rpartition("/")[2]
            if name not in seen:
                seen.add(name)
                visit(components.get(name))
            return
        patterned = patterned or "pattern" in schema
        free_text = not patterned and not {"enum", "const", "format"} & schema.keys()
        if schema.get("type") == "string" and free_text:
            schema["pattern"] = WITHOUT_CONTROLS
        for key in ("properties", "additionalProperties"):
            value = schema.get(key)
            visit(list(value.values()) if key == "properties" and value else value)
        for key in ("items", "oneOf", "anyOf", "allOf"):
            # a pattern next to `oneOf` (Litestar's optional fields) holds for its string arm
            visit(schema.get(key), patterned if key != "items" else False)

    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            if isinstance(operation, dict) and "requestBody" in operation:
                media = operation["requestBody"].get("content", {}).get(JSON_ONLY[0])
                if media is not None:
                    visit(media.get("schema"))


def operation_id(handler: HTTPRouteHandler, _method: Any, _path: list[Any]) -> str:
    """A route's `operationId`: its function's name in lower camel case (`place_order` is
    `placeOrder`), so that a route function is named for what a client calls (`register_user`,
    not `register`). One function name serves one route in the whole API: the merged document
    refuses a repeated id (`documents.merge`)."""
    first, *rest = handler.handler_name.split("_")
    return first + "".join(word.capitalize() for word in rest)


def openapi_config(title: str, document: Callable[[], Document]) -> OpenAPIConfig:
    """The documentation of every app: `/docs` shows `document` (Swagger UI), which
    `/docs/openapi.json` serves as `/openapi.json` does."""
    return OpenAPIConfig(
        title=title,
        version=VERSION,
        path="/docs",
        render_plugins=[DocsPage(document, path="/"), DocumentJson(document)],
        operation_id_creator=operation_id,
        components=Components(
            security_schemes={
                "bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")
            }
        ),
    )


def published(app: Litestar) -> Document:
    """The OpenAPI document of `app`'s routes as it is published: Litestar's, with the
    `Idempotency-Key` header, the problem responses and the text rules of request bodies."""
    openapi = app.openapi_schema
    _document_idempotency(app, openapi)
    document_problems(openapi)
    document = openapi.to_schema()
    document_control_characters(document)
    return document


_KEY_PARAMETER = Parameter(
    name=HEADER,
    param_in=ParamType.HEADER,
    required=True,
    description=HEADER_DESCRIPTION,
    schema=Schema(
        one_of=[Schema(type=OpenAPIType.STRING), Schema(type=OpenAPIType.NULL)],
        description=HEADER_DESCRIPTION,
    ),
)


def _document_idempotency(app: Litestar, openapi: OpenAPI) -> None:
    """The `Idempotency-Key` header of the routes that switched idempotency on: their claim
    reads it, not a parameter of theirs, so Litestar does not document it."""
    for route in app.routes:
        path_item = (openapi.paths or {}).get(route.path_format)
        if not isinstance(route, HTTPRoute) or path_item is None:
            continue
        for handler in route.route_handlers:
            if OPTION not in handler.opt:
                continue
            for method in handler.http_methods:
                operation = getattr(path_item, method.lower(), None)
                if operation is not None:
                    operation.parameters = [*(operation.parameters or []), _KEY_PARAMETER]


class DocsPage(SwaggerRenderPlugin):
    """Swagger UI over the same document as `/openapi.json`."""

    def __init__(self, document: Callable[[], Document], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._document = document

    def render(self, request: Request[Any, Any, Any], openapi_schema: Document) -> bytes:
        return super().render(request, self._document())


class DocumentJson(JsonRenderPlugin):
    """`/docs/openapi.json`: the same document as `/openapi.json` (Litestar's own would be
    the app's routes alone, without what `published` adds)."""

    def __init__(self, document: Callable[[], Document], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._document = document

    def render(self, request: Request[Any, Any, Any], openapi_schema: Document) -> bytes:
        return super().render(request, self._document())
