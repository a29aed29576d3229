"""A request's unit of work, as routes are given it: a route that answers commits, one that
raises rolls back, a commit that fails is the answer (never a 2xx), and an idempotent request
stores its response in the transaction of its effect. Every route of the app gets its
dependencies in one chain."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from litestar import Controller, Litestar, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.routes import HTTPRoute
from litestar.status_codes import HTTP_201_CREATED
from sqlalchemy import text

from bazaar.platform.auth import TokenIssuer, TokenVerifier
from bazaar.platform.db import Database
from bazaar.platform.errors import Conflict
from bazaar.platform.idempotency import Claim, Idempotency, idempotent
from bazaar.platform.schema import idempotency_record
from bazaar.platform.sqlite import sqlite_database
from bazaar.platform.unit_of_work import (
    AnyRequest,
    Caller,
    Transaction,
    UnitOfWork,
    provide_session,
    provide_work,
)
from bazaar.platform.web import CurrentUser, create_app, service_router
from bazaar.runtime.embedded import Runtime
from tests.plugin import settings_for

Work = NamedDependency[UnitOfWork]


async def add_child(session: Any, parent_id: str) -> dict[str, str]:
    # the foreign key is checked when the transaction commits, not when the row is written
    await session.execute(text("INSERT INTO child (parent_id) VALUES (:p)"), {"p": parent_id})
    return {"parent_id": parent_id}


class ChildController(Controller):
    path = "/children"

    @post("/{parent_id:str}", status_code=HTTP_201_CREATED)
    async def add(self, parent_id: FromPath[str], session: Transaction) -> dict[str, str]:
        return await add_child(session, parent_id)

    @post("/{parent_id:str}/refused", status_code=HTTP_201_CREATED)
    async def add_then_refuse(
        self, parent_id: FromPath[str], session: Transaction
    ) -> dict[str, str]:
        await add_child(session, parent_id)
        raise Conflict("refused after writing")

    @post("/{parent_id:str}/keyed", status_code=HTTP_201_CREATED, opt=idempotent("test"))
    async def add_once(
        self, parent_id: FromPath[str], user: CurrentUser, work: Work
    ) -> dict[str, str]:
        return await add_child(await work.session(), parent_id)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = sqlite_database("edge", tmp_path / "edge.db")
    async with database.primary.begin() as connection:
        await connection.execute(text("CREATE TABLE parent (id TEXT PRIMARY KEY)"))
        await connection.execute(
            text(
                "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id TEXT NOT NULL"
                " REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)"
            )
        )
        await connection.run_sync(idempotency_record.create)
    yield database
    await database.dispose()


@pytest.fixture
async def client(db: Database) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    key = Ed25519PrivateKey.generate()
    token = TokenIssuer(key, 60).issue("user-1", "customer")

    def database(_request: AnyRequest, _user: Caller) -> Database:
        return db

    def work(_request: AnyRequest, _user: Caller, claim: Claim | None) -> UnitOfWork:
        return UnitOfWork(db, claim=claim)

    dependencies = {
        "session": provide_session(database),
        "work": provide_work(work, Idempotency()),
    }
    app = create_app(
        title="edge",
        routers=[service_router([ChildController], dependencies)],
        verifier=TokenVerifier([key.public_key()]),
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://edge.test") as http:
        yield http, {"Authorization": f"Bearer {token}"}


async def children(db: Database) -> list[str]:
    async with db.read() as session:
        return list((await session.scalars(text("SELECT parent_id FROM child"))).all())


async def add_parent(db: Database, parent_id: str) -> None:
    async with db.write() as session:
        await session.execute(text("INSERT INTO parent (id) VALUES (:id)"), {"id": parent_id})


async def test_a_route_that_answers_commits(
    db: Database, client: tuple[httpx.AsyncClient, dict[str, str]]
) -> None:
    http, _ = client
    await add_parent(db, "p1")
    response = await http.post("/children/p1")
    assert response.status_code == 201, response.text
    assert await children(db) == ["p1"]


async def test_a_route_that_raises_rolls_back(
    db: Database, client: tuple[httpx.AsyncClient, dict[str, str]]
) -> None:
    http, _ = client
    await add_parent(db, "p1")
    response = await http.post("/children/p1/refused")
    assert response.status_code == 409
    assert await children(db) == []


async def test_a_commit_that_fails_is_the_answer_and_stores_nothing(
    db: Database, client: tuple[httpx.AsyncClient, dict[str, str]]
) -> None:
    http, _ = client
    response = await http.post("/children/nobody")  # the route returns; the commit refuses
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert await children(db) == []
    await add_parent(db, "p1")
    assert (await http.post("/children/p1")).status_code == 201  # the writer is free again


async def test_an_idempotent_request_whose_commit_fails_leaves_its_key_free(
    db: Database, client: tuple[httpx.AsyncClient, dict[str, str]]
) -> None:
    http, signed_in = client
    headers = {**signed_in, "Idempotency-Key": "k1"}
    assert (await http.post("/children/p1/keyed", headers=headers)).status_code == 500
    assert await children(db) == []
    await add_parent(db, "p1")
    first = await http.post("/children/p1/keyed", headers=headers)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    again = await http.post("/children/p1/keyed", headers=headers)
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content
    assert await children(db) == ["p1"]
    async with db.read() as session:
        stored = (await session.execute(idempotency_record.select())).one()
    assert (stored.scope, stored.response_status, stored.response_body) == (
        "test:user-1",
        201,
        first.content,
    )


async def test_an_idempotent_route_needs_its_key(
    client: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    http, signed_in = client
    response = await http.post("/children/p1/keyed", headers=signed_in)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["detail"]


def litestar_app(runtime: Runtime) -> Litestar:
    app: Any = runtime.app()
    while not isinstance(app, Litestar):
        app = app.app  # the request context, then the edge cache
    return app


def test_every_route_gets_its_dependencies_in_one_chain(tmp_path: Path) -> None:
    """Dependencies that do not depend on one another are resolved in an anyio task group
    (some 60 µs a request); a second generator dependency would commit apart from the first."""
    app = litestar_app(Runtime(settings_for(tmp_path / "data")))
    checked = 0
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler, kwargs_model in route.route_handler_map.values():
            where = f"{route.path} {handler.handler_name}"
            assert all(len(batch) == 1 for batch in kwargs_model.dependency_batches), where
            generators = [
                batch
                for batch in kwargs_model.dependency_batches
                for dependency in batch
                if dependency.provide.has_async_generator_dependency
            ]
            assert len(generators) <= 1, where
            checked += 1
    assert checked > 25
