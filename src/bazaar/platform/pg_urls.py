"""One PostgreSQL URL, whole, for every connection Bazaar opens to it.

A managed server may accept only TLS, so each connection keeps the URL's every option. Two
spellings of TLS are accepted: libpq's `sslmode=require` (what providers hand out) and
asyncpg's `ssl=require`; SQLAlchemy's asyncpg engine takes the second, a plain asyncpg
connection's DSN the first, and each gets the one it understands.
"""

from sqlalchemy.engine import URL, make_url


def engine_url(url: str | URL) -> URL:
    """`url` for SQLAlchemy's asyncpg engine."""
    parts = make_url(url).set(drivername="postgresql+asyncpg")
    return _renamed(parts, "sslmode", "ssl")


def driver_dsn(url: str | URL, *, database: str | None = None) -> str:
    """`url` (on `database` if given) as a DSN for `asyncpg.connect`, password included."""
    parts = make_url(url).set(drivername="postgresql")
    if database is not None:
        parts = parts.set(database=database)
    return _renamed(parts, "ssl", "sslmode").render_as_string(hide_password=False)


def _renamed(url: URL, old: str, new: str) -> URL:
    if old not in url.query or new in url.query:
        return url
    query = dict(url.query)
    query[new] = query.pop(old)
    return url.set(query=query)
