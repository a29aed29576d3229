"""One PostgreSQL URL, whole, for every connection Bazaar opens to it.

A managed server may accept only TLS, so each connection keeps the URL's every option, read
as libpq reads them (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`, ...): every connection,
the engines' included (platform.postgres), is opened by asyncpg from `driver_dsn`. asyncpg's
own spelling `ssl=require`, which SQLAlchemy documents, is accepted as `sslmode` too.
"""

from sqlalchemy.engine import URL, make_url


def driver_dsn(url: str | URL, *, database: str | None = None) -> str:
    """`url` (on `database` if given) as a DSN for `asyncpg.connect`, password included."""
    parts = make_url(url).set(drivername="postgresql")
    if database is not None:
        parts = parts.set(database=database)
    if "ssl" in parts.query and "sslmode" not in parts.query:
        query = dict(parts.query)
        query["sslmode"] = query.pop("ssl")
        parts = parts.set(query=query)
    return parts.render_as_string(hide_password=False)
