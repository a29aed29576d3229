"""Catalog's HTTP routes: parse, call a use case, shape the response."""

from dataclasses import dataclass
from typing import Annotated

from litestar import Request, Response, Router, delete, get, patch, post
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.params import FromPath, JSONBody, Parameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from bazaar.catalog import imports, service
from bazaar.catalog.models import Product
from bazaar.catalog.pages import ProductPages, etag_matches, product_read
from bazaar.catalog.schemas import (
    CategoryList,
    CategoryRead,
    JobAccepted,
    JobRead,
    ProductCreate,
    ProductRead,
    ProductUpdate,
)
from bazaar.platform.db import Database
from bazaar.platform.errors import FieldError, Unprocessable
from bazaar.platform.openapi import problems
from bazaar.platform.pagination import Cursor, Limit, Page, decode_cursor, page_of
from bazaar.platform.web import CurrentUser, json_response

CategoryFilter = Annotated[str | None, Parameter(max_length=100, description="Category name.")]
NameSearch = Annotated[
    str | None,
    Parameter(
        max_length=200,
        # no control character: on SQLite a NUL ended the pattern and matched every product
        pattern=r"^[^\x00-\x1f\x7f]*$",
        description="Case-insensitive search in the name.",
    ),
]
MAX_IDS = 100
IdsFilter = Annotated[
    str | None,
    Parameter(
        max_length=MAX_IDS * 40,
        description=f"Comma-separated product ids (at most {MAX_IDS}): those on sale, in one"
        " page; not combined with the other filters.",
    ),
]
ADMIN = [{"bearer": []}]
"""The OpenAPI security of the admin routes; the reads are public."""
MAX_IMPORT_BODY = 50 * 1024 * 1024
IMPORT_HEADER = ",".join(imports.COLUMNS)


@dataclass
class CsvImportOperation(Operation):
    """The import's OpenAPI operation: its body is read raw, so Litestar cannot describe it."""

    def __post_init__(self) -> None:
        csv = Schema(
            type=OpenAPIType.STRING,
            min_length=1,  # an empty body is 400
            description=f"CSV with the header `{IMPORT_HEADER}`",
        )
        self.request_body = RequestBody(
            content={"text/csv": OpenAPIMediaType(schema=csv)}, required=True
        )


NOT_MODIFIED = {304: ResponseSpec(None, description="Not modified: `If-None-Match` names the ETag")}


def create_router(db: Database, pages: ProductPages) -> Router:
    @get("/products", summary="List products")
    async def list_products(
        limit: Limit = 20,
        cursor: Cursor = None,
        category: CategoryFilter = None,
        q: NameSearch = None,
        ids: IdsFilter = None,
    ) -> Page[ProductRead]:
        if ids is not None:
            wanted = _product_ids(ids, alone=cursor is None and category is None and q is None)
            async with db.read() as session:
                products = await service.get_products(session, wanted)
            items = sorted((product_read(p) for p in products), key=lambda p: p.id)
            return Page(items=items, next_cursor=None)
        position = decode_cursor(cursor)
        after = str(position[0]) if position else None
        async with db.read() as session:
            products = await service.list_products(
                session, limit=limit + 1, after=after, category=category, query=q
            )
        page = page_of(products, limit, lambda product: (product.id,))
        return Page(items=[product_read(p) for p in page.items], next_cursor=page.next_cursor)

    @get(
        "/products/{product_id:str}",
        summary="One product",
        description="Carries `ETag` and `Cache-Control`; `If-None-Match` gives 304.",
        responses={**NOT_MODIFIED, **problems(404)},
    )
    async def get_product(product_id: FromPath[str], request: Request) -> Response[ProductRead]:

        async def load() -> Product:
            # From the primary: a page is cached for up to the staleness bound, and a
            # replica's lag would add to it. Listings, not cached, come from replicas.
            async with db.read(fresh=True) as session:
                return await service.get_product(session, product_id)

        page = await pages.fetch(product_id, load)
        headers = {"ETag": page.etag, "Cache-Control": pages.cache_control}
        if etag_matches(request.headers.get("if-none-match"), page.etag):
            return Response(content=b"", status_code=304, headers=headers)
        return json_response(page.body, headers=headers)

    @post(
        "/products",
        status_code=HTTP_201_CREATED,
        summary="Create a product (admin)",
        security=ADMIN,
        responses=problems(403, 409),
    )
    async def create_product(data: JSONBody[ProductCreate], user: CurrentUser) -> ProductRead:
        user.require_admin()
        async with db.write() as session:
            product = await service.create_product(session, data)
        return product_read(product)

    @patch(
        "/products/{product_id:str}",
        summary="Change a product (admin)",
        security=ADMIN,
        responses=problems(403, 404, 409),
    )
    async def update_product(
        product_id: FromPath[str], data: JSONBody[ProductUpdate], user: CurrentUser
    ) -> ProductRead:
        user.require_admin()
        async with db.write() as session:
            product = await service.update_product(session, product_id, data)
        await pages.drop([product_id])
        return product_read(product)

    @delete(
        "/products/{product_id:str}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Delete a product (admin)",
        security=ADMIN,
        responses=problems(403, 404),
    )
    async def delete_product(product_id: FromPath[str], user: CurrentUser) -> None:
        user.require_admin()
        async with db.write() as session:
            await service.delete_product(session, product_id)
        await pages.drop([product_id])

    @get("/categories", summary="Categories with live products")
    async def list_categories() -> CategoryList:
        async with db.read() as session:
            categories = await service.list_categories(session)
        return CategoryList(items=[CategoryRead(name, count) for name, count in categories])

    @post(
        "/products/import",
        status_code=HTTP_202_ACCEPTED,
        summary="Import products from CSV (admin)",
        security=ADMIN,
        description=f"A `text/csv` body of up to 50 MiB with the header `{IMPORT_HEADER}`; "
        "follow the job.",
        request_max_body_size=MAX_IMPORT_BODY,
        responses=problems(403, 413, 415),
        opt={"media_types": ("text/csv",)},
        operation_class=CsvImportOperation,
    )
    async def import_products(request: Request, user: CurrentUser) -> JobAccepted:
        user.require_admin()
        content = await request.body()
        async with db.write() as session:
            job = await imports.submit_import(session, content, user.id)
        return JobAccepted(job_id=job.id)

    @get(
        "/jobs/{job_id:str}",
        summary="A background job (admin)",
        security=ADMIN,
        responses=problems(403, 404),
    )
    async def get_job(job_id: FromPath[str], user: CurrentUser) -> JobRead:
        user.require_admin()
        job = await db.read_by_id(lambda session: imports.get_job(session, job_id))
        return imports.job_read(job)

    return Router(
        "/v1",
        route_handlers=[
            list_products,
            get_product,
            create_product,
            update_product,
            delete_product,
            list_categories,
            import_products,
            get_job,
        ],
        tags=["catalog"],
    )


def _product_ids(ids: str, *, alone: bool) -> list[str]:
    """The ids of an `?ids=` filter: 1 to `MAX_IDS` of them, without another filter."""
    if not alone:
        raise Unprocessable(
            "`ids` is not combined with `cursor`, `category` or `q`",
            [FieldError(["query", "ids"], "used alone")],
        )
    wanted = list(dict.fromkeys(part.strip() for part in ids.split(",") if part.strip()))
    if not 1 <= len(wanted) <= MAX_IDS:
        raise Unprocessable(
            "The request is not valid",
            [FieldError(["query", "ids"], f"1 to {MAX_IDS} comma-separated ids")],
        )
    return wanted
