"""Identity over HTTP: registration, login, token rotation and the error model."""

import httpx

from tests.plugin import login, register


async def test_register_then_me(client: httpx.AsyncClient) -> None:
    user = await register(client)
    assert user["role"] == "customer" and user["email"] == "ada@example.com"
    tokens = await login(client)
    assert tokens["token_type"] == "bearer" and tokens["expires_in"] > 0
    me = await client.get(
        "/v1/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert me.status_code == 200
    assert me.json() == user


async def test_malformed_json_is_400_and_invalid_fields_are_422(client: httpx.AsyncClient) -> None:
    malformed = await client.post(
        "/v1/auth/register", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert malformed.status_code == 400
    assert malformed.headers["content-type"] == "application/problem+json"
    invalid = await client.post(
        "/v1/auth/register", json={"email": "not-an-email", "password": "short", "name": "A"}
    )
    assert invalid.status_code == 422
    body = invalid.json()
    assert body["status"] == 422 and body["errors"], body


async def test_email_is_unique_case_insensitively(client: httpx.AsyncClient) -> None:
    await register(client, "Ada@Example.com")
    again = await client.post(
        "/v1/auth/register",
        json={"email": "ada@example.COM", "password": "another one", "name": "Ada"},
    )
    assert again.status_code == 409
    assert again.json()["status"] == 409


async def test_wrong_password_is_401_and_repeated_failures_429(client: httpx.AsyncClient) -> None:
    await register(client)
    statuses = []
    for _ in range(7):
        response = await client.post(
            "/v1/auth/login", json={"email": "ada@example.com", "password": "wrong password"}
        )
        statuses.append(response.status_code)
    assert statuses[:5] == [401] * 5
    assert statuses[-1] == 429
    assert int(response.headers["retry-after"]) >= 1


async def test_me_needs_a_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/users/me")
    assert response.status_code == 401


async def test_openapi_marks_only_me_as_needing_a_token(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    for action in ("register", "login", "refresh", "logout"):
        assert not paths[f"/v1/auth/{action}"]["post"].get("security"), action
    assert paths["/v1/users/me"]["get"]["security"] == [{"bearer": []}]
    assert {"401", "429"} <= paths["/v1/auth/login"]["post"]["responses"].keys()
    assert "409" in paths["/v1/auth/register"]["post"]["responses"]
