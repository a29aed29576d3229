"""The ceiling of the stack: a hello-world Litestar app on granian, for side-by-side runs.

.venv/bin/granian --interface asgi --workers 1 --port 8001 --no-access-log bench.hello:app
"""

from litestar import Litestar, get


@get("/", sync_to_thread=False)
def hello() -> dict[str, str]:
    return {"hello": "world"}


app = Litestar(route_handlers=[hello], logging_config=None)
