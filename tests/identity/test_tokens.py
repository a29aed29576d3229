"""Refresh tokens rotate; a used one coming back revokes its whole family."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from bazaar.platform.keys import KEY_FILE, PUBLIC_KEY_FILE, load_or_create_key
from tests.plugin import login, register


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/v1/auth/refresh", json={"refresh_token": token})


async def test_refresh_rotates_and_reuse_revokes_the_family(client: httpx.AsyncClient) -> None:
    await register(client)
    first = await login(client)
    second = await refresh(client, first["refresh_token"])
    assert second.status_code == 200
    newest = second.json()["refresh_token"]
    assert newest != first["refresh_token"]

    replayed = await refresh(client, first["refresh_token"])
    assert replayed.status_code == 401
    # the family is revoked: even the newest token of it stops working
    assert (await refresh(client, newest)).status_code == 401


async def test_logout_ends_the_session(client: httpx.AsyncClient) -> None:
    await register(client)
    tokens = await login(client)
    other_session = await login(client)
    out = await client.post("/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]})
    assert out.status_code == 204
    assert (await refresh(client, tokens["refresh_token"])).status_code == 401
    assert (await refresh(client, other_session["refresh_token"])).status_code == 200


async def test_garbage_refresh_token_is_401(client: httpx.AsyncClient) -> None:
    assert (await refresh(client, "nope")).status_code == 401
    assert (await refresh(client, "0190.deadbeef")).status_code == 401


def test_processes_starting_together_agree_on_one_signing_key(tmp_path: Path) -> None:
    path = tmp_path / "data" / KEY_FILE
    with ThreadPoolExecutor(max_workers=8) as pool:
        keys = list(pool.map(lambda _: load_or_create_key(path), range(16)))
    public = {key.public_key().public_bytes_raw() for key in keys}
    assert len(public) == 1
    # no candidate left behind; the public key beside the private one, for the verifiers
    assert sorted(p.name for p in path.parent.iterdir()) == [KEY_FILE, PUBLIC_KEY_FILE]
