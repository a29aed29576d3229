"""Name search (`?q=`): the products whose name contains the query, case-insensitively, found
through an index instead of a test of every product.

Whatever the database, a product matches when `lower(name) LIKE '%q%'`, as it always has; an
index only narrows the rows that test runs on. On PostgreSQL the planner uses the pg_trgm GIN
index on `lower(name)` by itself, and weighs it with its statistics against a walk of the
primary key (which finds a common word sooner). SQLite has an FTS5 trigram index of the names,
`product_name_search` (kept in step by triggers: migration ffb8b0de9476), but no statistics to
weigh it with: so a search first walks the next `WINDOW` products in id order, which fills a
page of a common word at once, and asks the index only when the window does not.
"""

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Select,
    column,
    func,
    literal_column,
    select,
    table,
)
from sqlalchemy.orm import QueryableAttribute, aliased

from bazaar.catalog.models import Product
from bazaar.platform.db import ReadSession

TRIGRAM = 3
"""The index's unit: a query shorter than this has no trigram to look up, so SQLite tests it on
every product (LIKE), as every search did before the index."""
WINDOW = 2000
"""Products in id order that SQLite tests before asking its index: about 1 ms, and a page of 20
fills from it when one name in a hundred matches. The index's cost grows with the matches (a
word in one name of sixteen takes it 5 to 8 ms among 100,000), the window's does not."""

_names = table("product_name_search", column("rowid"))
_product_rowid: ColumnElement[int] = literal_column("product.rowid")


def name_contains(name: QueryableAttribute[str], query: str) -> ColumnElement[bool]:
    """`lower(name)` contains `query` lowered, with `%` and `_` taken literally."""
    return func.lower(name).contains(query.lower(), autoescape=True)


async def find_by_name(
    session: ReadSession,
    listing: Select[Product],
    query: str,
    limit: int,
    *,
    walk_first: bool,
) -> list[Product]:
    """The first `limit` products of `listing` (live products in id order, filtered) whose name
    contains `query`. `walk_first` when `listing` walks the primary key (no filter that SQLite
    would read through another index and sort), so that its window is cheap."""
    matching = listing.where(name_contains(Product.name, query)).order_by(Product.id)
    if session.get_bind().dialect.name != "sqlite" or len(query.lower()) < TRIGRAM:
        return await _first(session, matching, limit)
    if walk_first:
        window = aliased(Product, listing.order_by(Product.id).limit(WINDOW).subquery())
        walked = select(window).where(name_contains(window.name, query)).order_by(window.id)
        found = await _first(session, walked, limit)
        if len(found) == limit:
            return found  # every later match has a later id
    # the query as one phrase of its trigrams, in a string where only `"` is special
    phrase = '"' + query.lower().replace('"', '""') + '"'
    indexed = select(_names.c.rowid).where(_names_match(phrase))
    return await _first(session, matching.where(_product_rowid.in_(indexed)), limit)


def _names_match(phrase: str) -> ColumnElement[bool]:
    return literal_column("product_name_search").op("MATCH", return_type=Boolean)(phrase)


async def _first(session: ReadSession, statement: Select[Product], limit: int) -> list[Product]:
    return list((await session.scalars(statement.limit(limit))).all())
