"""Catalog's HTTP routes: the public reads of products and categories, the admin's changes and
imports. A change drops the product's page and the listings once it commits (`DROPS_PAGE`,
`DROPS_LISTINGS`)."""

from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Controller, Response, delete, get, patch, post
from litestar.di import NamedDependency, Provide
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import (
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
)
from litestar.params import FromPath, JSONBody, Parameter
from litestar.status_codes import (
    HTTP_201_CREATED,
    HTTP_202_ACCEPTED,
    HTTP_204_NO_CONTENT,
    HTTP_304_NOT_MODIFIED,
)

from bazaar.catalog import imports, service
from bazaar.catalog.listings import ProductListings, encode_products
from bazaar.catalog.models import ImportJob
from bazaar.catalog.pages import PAGE_PREFIX, ProductPages, etag_matches, product_read
from bazaar.catalog.schemas import (
    CategoryList,
    CategoryRead,
    JobAccepted,
    JobRead,
    ProductCreate,
    ProductRead,
    ProductUpdate,
)
from bazaar.catalog.service import CatalogWork, ListingQuery
from bazaar.platform.db import Database
from bazaar.platform.edge_cache import Filler, cache_key
from bazaar.platform.errors import FieldError, NotFound, Unprocessable
from bazaar.platform.idempotency import Claim
from bazaar.platform.money import Money
from bazaar.platform.openapi import problems
from bazaar.platform.pagination import Cursor, Limit, Page, decode_cursor
from bazaar.platform.unit_of_work import (
    AnyRequest,
    Caller,
    ReadOnly,
    Transaction,
    provide_reader,
    provide_session,
    provide_work,
)
from bazaar.platform.web import BEARER, CurrentUser, json_response

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
DROPS_PAGE = {"drops_page": True}
"""The `opt` of a route that changes the product its path names: the product's cached page and
every cached listing are dropped once the change commits, before the answer (and on every
instance when its `product.updated` arrives)."""
DROPS_LISTINGS = {"drops_listings": True}
"""The `opt` of a route that adds a product: every cached listing is dropped once it commits."""
Work = NamedDependency[CatalogWork]


def dependencies(
    db: Database, pages: ProductPages, listings: ProductListings
) -> dict[str, Provide]:
    """What catalog's routes are given per request: `work` (a `CatalogWork`), `session` and
    `reader`."""

    def database(_request: AnyRequest, _user: Caller) -> Database:
        return db

    def work(_request: AnyRequest, _user: Caller, claim: Claim | None) -> CatalogWork:
        return CatalogWork(db, pages, listings, claim=claim)

    async def drop_changed(request: AnyRequest) -> None:
        opt = request.route_handler.opt
        if opt.get("drops_page"):
            await pages.drop([request.path_params["product_id"]])  # the listings with it
        elif opt.get("drops_listings"):
            listings.drop()

    return {
        "work": provide_work(work),
        "session": provide_session(database, committed=drop_changed),
        "reader": provide_reader(database),
    }


class ProductController(Controller):
    """The reads are public; the admin's routes need an access token (`security=BEARER`)."""

    path = "/v1"
    tags = ["catalog"]

    @get(
        "/products",
        summary="List products",
        description="Carries `ETag` and `Cache-Control` (except with `ids`); `If-None-Match` "
        "gives 304.",
        responses=NOT_MODIFIED,
    )
    async def list_products(
        self,
        request: AnyRequest,
        work: Work,
        limit: Limit = 20,
        cursor: Cursor = None,
        category: CategoryFilter = None,
        q: NameSearch = None,
        ids: IdsFilter = None,
    ) -> Response[Page[ProductRead]]:
        if ids is not None:
            wanted = _product_ids(ids, alone=cursor is None and category is None and q is None)
            return json_response(encode_products(await service.products_on_sale(work.db, wanted)))
        position = decode_cursor(cursor)
        query = ListingQuery(limit, str(position[0]) if position else None, category, q)
        # the key the edge cache looks the same GET up by, before routing
        key = cache_key(request.scope["path"], request.scope["query_string"])
        listing = await service.product_listing(work, key, query)
        return _cacheable(request, listing.etag, listing.body, work.listings.cache_control)

    @get(
        "/products/{product_id:str}",
        summary="One product",
        description="Carries `ETag` and `Cache-Control`; `If-None-Match` gives 304.",
        responses={**NOT_MODIFIED, **problems(404)},
    )
    async def get_product(
        self, product_id: FromPath[str], request: AnyRequest, work: Work
    ) -> Response[ProductRead]:
        page = await service.product_page(work.db, work.pages, product_id)
        return _cacheable(request, page.etag, page.body, work.pages.cache_control)

    @post(
        "/products",
        status_code=HTTP_201_CREATED,
        summary="Create a product (admin)",
        security=BEARER,
        responses=problems(403, 409),
        opt=DROPS_LISTINGS,
    )
    async def create_product(
        self, data: JSONBody[ProductCreate], user: CurrentUser, session: Transaction
    ) -> ProductRead:
        user.require_admin()
        return product_read(await service.create_product(session, new_product(data)))

    @patch(
        "/products/{product_id:str}",
        summary="Change a product (admin)",
        security=BEARER,
        responses=problems(403, 404, 409),
        opt=DROPS_PAGE,
    )
    async def update_product(
        self,
        product_id: FromPath[str],
        data: JSONBody[ProductUpdate],
        user: CurrentUser,
        session: Transaction,
    ) -> ProductRead:
        user.require_admin()
        changes = product_changes(data)
        return product_read(await service.update_product(session, product_id, changes))

    @delete(
        "/products/{product_id:str}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Delete a product (admin)",
        security=BEARER,
        responses=problems(403, 404),
        opt=DROPS_PAGE,
    )
    async def delete_product(
        self, product_id: FromPath[str], user: CurrentUser, session: Transaction
    ) -> None:
        user.require_admin()
        await service.delete_product(session, product_id)

    @get("/categories", summary="Categories with live products")
    async def list_categories(self, reader: ReadOnly) -> CategoryList:
        categories = await service.list_categories(reader)
        return CategoryList(items=[CategoryRead(name, count) for name, count in categories])

    @post(
        "/products/import",
        status_code=HTTP_202_ACCEPTED,
        summary="Import products from CSV (admin)",
        security=BEARER,
        description=f"A `text/csv` body of up to 50 MiB with the header `{IMPORT_HEADER}`; "
        "follow the job.",
        request_max_body_size=MAX_IMPORT_BODY,
        responses=problems(403, 413, 415),
        opt={"media_types": ("text/csv",)},
        operation_class=CsvImportOperation,
    )
    async def import_products(
        self, request: AnyRequest, user: CurrentUser, session: Transaction
    ) -> JobAccepted:
        user.require_admin()
        job = await imports.submit_import(session, await request.body(), user.id)
        return JobAccepted(job_id=job.id)

    @get(
        "/jobs/{job_id:str}",
        summary="A background job (admin)",
        security=BEARER,
        responses=problems(403, 404),
    )
    async def get_job(self, job_id: FromPath[str], user: CurrentUser, work: Work) -> JobRead:
        user.require_admin()
        job = await work.read_by_id(lambda session: imports.get_job(session, job_id))
        return job_read(job)


def page_filler(db: Database, pages: ProductPages) -> Filler:
    """`GET /v1/products/{id}` for the edge cache's misses: the page read into the caches as
    the route reads it, without the framework. Anything else (a query string, a longer path,
    an unknown product) is left to the route."""

    async def fill(path: str, query_string: bytes) -> bool:
        product_id = path.removeprefix(PAGE_PREFIX)
        if query_string or not product_id or "/" in product_id:
            return False
        try:
            await service.product_page(db, pages, product_id)
        except NotFound:
            return False
        return True

    return fill


def _cacheable(request: AnyRequest, etag: str, body: bytes, cache_control: str) -> Response[Any]:
    """`body` with its ETag and caching headers, or 304 when `If-None-Match` names the ETag
    (as the edge cache answers the same GET)."""
    headers = {"ETag": etag, "Cache-Control": cache_control}
    if etag_matches(request.headers.get("if-none-match"), etag):
        return json_response(b"", HTTP_304_NOT_MODIFIED, headers)
    return json_response(body, headers=headers)


CONTROLLERS = [ProductController]


def new_product(data: ProductCreate) -> service.NewProduct:
    return service.NewProduct(
        sku=data.sku,
        name=data.name,
        category=data.category,
        price=Money(data.price.amount, data.price.currency),
        description=data.description,
        stock=data.stock,
    )


def product_changes(data: ProductUpdate) -> service.ProductChanges:
    price = data.price
    return service.ProductChanges(
        sku=data.sku,
        name=data.name,
        description=data.description,
        category=data.category,
        price=None if price is None else Money(price.amount, price.currency),
        stock=data.stock,
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


def job_read(job: ImportJob) -> JobRead:
    if job.status == imports.ImportStatus.SUCCEEDED:
        progress = 1.0
    elif job.total_rows:
        progress = min(1.0, job.processed_rows / job.total_rows)
    else:
        progress = 0.0
    result = None
    if job.total_rows is not None:
        result = {
            "processed": job.processed_rows,
            "total": job.total_rows,
            "created": job.created_count,
            "updated": job.updated_count,
            "failed": job.failed_count,
            "errors": job.errors,
        }
    return JobRead(job.id, job.kind, job.status, progress, result, job.error)
