"""The listing's statements (`GET /v1/products`: a page of live products in id order, after a
cursor, of a category, whose name contains a query), each one statement on the driver
(`Database.rows`), compiled once per shape of the request.

Name search (`?q=`) finds the products whose name contains the query, case-insensitively,
through an index instead of a test of every product. Whatever the database, a product matches
when `lower(name) LIKE '%q%'`, as it always has; an index only narrows the rows that test runs
on. On PostgreSQL the planner uses the pg_trgm GIN index on `lower(name)` by itself, and weighs
it with its statistics against a walk of the primary key (which finds a common word sooner).
SQLite has an FTS5 trigram index of the names, `product_name_search` (kept in step by
triggers: migration ffb8b0de9476), but no statistics to weigh it with: so a search first walks
the next `WINDOW` products in id order, which fills a page of a common word at once, and asks
the index only when the window does not.
"""

from enum import Enum
from typing import Any, NamedTuple

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Select,
    bindparam,
    column,
    func,
    literal_column,
    select,
    table,
)

from bazaar.catalog.models import PRODUCT_COLUMNS, Product
from bazaar.platform.queries import Query

TRIGRAM = 3
"""The index's unit: a query shorter than this has no trigram to look up, so SQLite tests it on
every product (LIKE), as every search did before the index."""
WINDOW = 2000
"""Products in id order that SQLite tests before asking its index: about 1 ms, and a page of 20
fills from it when one name in a hundred matches. The index's cost grows with the matches (a
word in one name of sixteen takes it 5 to 8 ms among 100,000), the window's does not."""
ESCAPE = "/"

_names = table("product_name_search", column("rowid"))
_product_rowid: ColumnElement[int] = literal_column("product.rowid")


class Search(Enum):
    """How a listing finds the names that contain its query."""

    LIKE = "like"
    """Every product the listing walks is tested (PostgreSQL, whose planner chooses the
    index; SQLite when the query is shorter than a trigram)."""
    WINDOW = "window"
    """SQLite: the next `WINDOW` products of the listing are tested."""
    INDEX = "index"
    """SQLite: the products the FTS5 index names are tested."""


class Shape(NamedTuple):
    """What a listing's statement filters on: one statement is compiled for each shape."""

    after: bool
    category: bool
    search: Search | None


_statements: dict[Shape, Query] = {}


def listing_params(
    limit: int, after: str | None, category: str | None, query: str | None
) -> dict[str, Any]:
    """What the listing's statements bind: `limit` products after the id `after`, of
    `category`, whose name contains `query` (any case; `%` and `_` as typed)."""
    params: dict[str, Any] = {"limit": limit, "after": after, "category": category}
    if query:
        params["pattern"] = like_pattern(query)
        params["phrase"] = '"' + query.lower().replace('"', '""') + '"'
    return params


def listing_statements(
    dialect: str, after: str | None, category: str | None, query: str | None
) -> list[Query]:
    """The statements that find a listing's products, to run in turn until one fills the page
    (every later match of the window has a later id than the page's)."""
    has_after, has_category = after is not None, category is not None
    if not query:
        return [statement(Shape(has_after, has_category, None))]
    if dialect != "sqlite" or len(query.lower()) < TRIGRAM:
        return [statement(Shape(has_after, has_category, Search.LIKE))]
    indexed = statement(Shape(has_after, has_category, Search.INDEX))
    if has_category:  # SQLite reads the category's index and sorts: no cheap walk first
        return [indexed]
    return [statement(Shape(has_after, False, Search.WINDOW)), indexed]


def statement(shape: Shape) -> Query:
    """The listing's statement of `shape`, binding `limit`, and as the shape says `after`,
    `category`, `pattern` (`like_pattern`) and `phrase` (the query as one FTS5 phrase)."""
    found = _statements.get(shape)
    if found is None:
        found = _statements[shape] = Query(_select(shape))
    return found


def like_pattern(query: str) -> str:
    """The LIKE pattern of a name containing `query` lowered, `%` and `_` taken literally."""
    escaped = query.lower().replace(ESCAPE, ESCAPE * 2)
    return "%" + escaped.replace("%", ESCAPE + "%").replace("_", ESCAPE + "_") + "%"


def _select(shape: Shape) -> Select[Any]:
    walked = select(*PRODUCT_COLUMNS).where(Product.deleted_at.is_(None))
    products = walked.selected_columns
    if shape.after:
        walked = walked.where(products.id > bindparam("after"))
    if shape.category:
        walked = walked.where(products.category == bindparam("category"))
    if shape.search is Search.WINDOW:
        window = walked.order_by(products.id).limit(WINDOW).subquery()
        walked, products = select(window), window.c
    if shape.search is not None:
        walked = walked.where(_name_contains(products.name))
    if shape.search is Search.INDEX:
        indexed = select(_names.c.rowid).where(_names_match(bindparam("phrase")))
        walked = walked.where(_product_rowid.in_(indexed))
    return walked.order_by(products.id).limit(bindparam("limit"))


def _name_contains(name: ColumnElement[str]) -> ColumnElement[bool]:
    return func.lower(name).like(bindparam("pattern"), escape=ESCAPE)


def _names_match(phrase: Any) -> ColumnElement[bool]:
    return literal_column("product_name_search").op("MATCH", return_type=Boolean)(phrase)
