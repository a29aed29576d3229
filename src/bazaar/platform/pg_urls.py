"""One PostgreSQL URL, whole, for every connection Bazaar opens to it.

A managed server may accept only TLS, so each connection keeps the URL's every option, read
as libpq reads them (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`, ...): every connection,
the engines' included (platform.postgres), is opened by asyncpg from `driver_dsn`. asyncpg's
own spelling `ssl=require`, which SQLAlchemy documents, is accepted as `sslmode` too.
"""

from sqlalchemy.engine import URL, make_url


def engine_url(url: str | URL) -> URL:
    """`url` naming SQLAlchemy's asyncpg dialect (its options are `driver_dsn`'s to read)."""
    return make_url(url).set(drivername="postgresql+asyncpg")


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
