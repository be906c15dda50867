"""The token cache under load: one lookup per token at a time, refreshed ahead, revocable.

* Many concurrent requests (real HTTP, 50 connections to a real uvicorn) with the token
  not cached, cold or expired: exactly one token lookup, counted both by the cache and
  by the ``X-Flotilla-Sql-Statements`` headers (the requests that waited ran none).
* A request that finds its token's entry past half its life is answered from the cache
  and starts one background lookup: a token revoked meanwhile ends at that lookup.
* Two app instances on one SQLite file: a token revoked through one stops working in the
  other once ``token_cache_seconds`` have passed since the other's last lookup (the
  cross-process version with real ``flotilla serve`` processes is
  ``tests/integration/test_token_revocation_processes.py``); a lookup that started before
  a revocation in its own process is not remembered.

Clocks are the cache's own (``TokenCache.clock``), advanced by the test: nothing here
waits for time to pass or asserts a duration.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from flotilla.api.app import create_app
from flotilla.api.token_cache import TokenCache
from flotilla.context import RequestContext
from flotilla.db import models as m
from flotilla.services import tokens as token_service
from flotilla.settings import ConductorSettings, Settings

CONNS = 50
HEADER = "x-flotilla-sql-statements"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _settings(data_dir: Path, db_url: str) -> Settings:
    return Settings(
        data_dir=data_dir, database_url=db_url, enabled_providers=["fake"], default_provider="fake",
        conductor=ConductorSettings(enabled=False), debug_sql_count=True, token_cache_seconds=2,
    )  # fmt: skip


@pytest.fixture
def served(tmp_path: Path, db_url: str) -> Iterator[tuple[FastAPI, str, str, Clock]]:
    """An app on a real uvicorn (a thread of this process), a member token, the cache's clock."""
    app = create_app(_settings(tmp_path, db_url))
    clock = Clock()
    app.state.runtime.auth.cache.clock = clock
    with app.state.runtime.db.session() as s:
        token = token_service.create(s, user_id="m", project_id="p1", roles=["member"])
    with _uvicorn(app) as url:
        yield app, url, token, clock
    app.state.runtime.db.dispose()


@contextmanager
def _uvicorn(app: FastAPI) -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(512)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def _gate(cache: TokenCache, token: str, waiters: int) -> None:
    """Hold the lookup of ``token`` until ``waiters`` other requests wait for it (so the
    test sees them overlap), then run the real one. Runs in the lookup's thread."""
    real = cache.lookup

    def gated(t: str) -> tuple[RequestContext, datetime | None] | None:
        deadline = time.monotonic() + 60
        while cache.joined(t) < waiters and time.monotonic() < deadline:
            time.sleep(0.002)
        return real(t)

    cache.lookup = gated
    cache.inline = lambda: False  # a lookup on the event loop would stop the others arriving


async def _burst(url: str, path: str, token: str, n: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:
        return await asyncio.gather(*(client.get(path, headers={"X-Auth-Token": token}) for _ in range(n)))


def _template(app: FastAPI) -> str:
    with app.state.runtime.db.session() as s:
        row = m.ClusterTemplate(uuid="6f0a6c4e-1b7c-4c5e-9c55-3a8f4b7f2a10", name="t", project_id="p1", user_id="m",
                                coe="swarm", image_id="img")  # fmt: skip
        s.add(row)
    return row.uuid


@pytest.mark.parametrize("cache_state", ["cold", "expired"])
def test_concurrent_requests_share_one_token_lookup(
    served: tuple[FastAPI, str, str, Clock], cache_state: str
) -> None:
    app, url, token, clock = served
    cache: TokenCache = app.state.runtime.auth.cache
    uuid = _template(app)
    path = f"/v1/clustertemplates/{uuid}"
    if cache_state == "expired":
        warm = asyncio.run(_burst(url, path, token, 1))
        assert warm[0].status_code == 200, warm[0].text
        clock.now += cache.ttl + 0.001  # the entry has run out
    before = cache.lookups
    _gate(cache, token, CONNS - 1)
    answers = asyncio.run(_burst(url, path, token, CONNS))
    assert [r.status_code for r in answers] == [200] * CONNS, answers[0].text
    assert cache.lookups - before == 1
    # Each show is one statement; the one request that looked the token up ran one more.
    assert sum(int(r.headers[HEADER]) for r in answers) == CONNS + 1


def test_a_revoked_token_refused_to_every_waiter(served: tuple[FastAPI, str, str, Clock]) -> None:
    """The shared lookup's answer is shared when it is a refusal too (no 500, no 200)."""
    app, url, token, _clock = served
    cache: TokenCache = app.state.runtime.auth.cache
    member = RequestContext(user_id="m", project_id="p1", roles=frozenset({"member"}))
    with app.state.runtime.db.session() as s:
        (row,) = token_service.list_tokens(s, member)
        token_service.revoke(s, member, str(row.id))
    _gate(cache, token, CONNS - 1)
    answers = asyncio.run(_burst(url, "/v1/clusters", token, CONNS))
    assert [r.status_code for r in answers] == [401] * CONNS
    assert cache.lookups == 1


@pytest.fixture
def two_apps(tmp_path: Path) -> Iterator[tuple[TestClient, TestClient, Clock, Clock, str]]:
    """Two app instances (each its own engine and token cache) on one SQLite file."""
    url = f"sqlite:///{tmp_path / 'flotilla.db'}"
    first = create_app(_settings(tmp_path, url))
    second = create_app(_settings(tmp_path, url))
    clocks = Clock(), Clock()
    first.state.runtime.auth.cache.clock, second.state.runtime.auth.cache.clock = clocks
    with first.state.runtime.db.session() as s:
        token = token_service.create(s, user_id="m", project_id="p1", roles=["member"])
    with TestClient(first) as a, TestClient(second) as b:
        yield a, b, clocks[0], clocks[1], token
    first.state.runtime.db.dispose()
    second.state.runtime.db.dispose()


def _own_token_id(client: TestClient, token: str) -> int:
    listed = client.get("/local/v1/tokens", headers={"X-Auth-Token": token})
    assert listed.status_code == 200, listed.text
    (mine,) = listed.json()["tokens"]
    return int(mine["id"])


def test_a_token_revoked_in_one_app_ends_in_the_other_within_the_cache_time(
    two_apps: tuple[TestClient, TestClient, Clock, Clock, str],
) -> None:
    a, b, clock_a, _clock_b, token = two_apps
    headers = {"X-Auth-Token": token}
    cache_a: TokenCache = a.app.state.runtime.auth.cache  # type: ignore[attr-defined]
    assert a.get("/v1/clusters", headers=headers).status_code == 200  # cached in a
    assert b.delete(f"/local/v1/tokens/{_own_token_id(b, token)}", headers=headers).status_code == 204
    assert b.get("/v1/clusters", headers=headers).status_code == 401  # at once where it was revoked
    # a still answers from its entry (the documented bound), without starting a refresh ...
    clock_a.now += cache_a.ttl * 0.4
    assert a.get("/v1/clusters", headers=headers).status_code == 200
    # ... and refuses it once token_cache_seconds have passed since its lookup.
    clock_a.now += cache_a.ttl * 0.6
    assert a.get("/v1/clusters", headers=headers).status_code == 401


def test_refresh_ahead_keeps_a_hot_token_cached_and_notices_a_revocation(
    two_apps: tuple[TestClient, TestClient, Clock, Clock, str],
) -> None:
    a, b, clock_a, _clock_b, token = two_apps
    headers = {"X-Auth-Token": token}
    cache_a: TokenCache = a.app.state.runtime.auth.cache  # type: ignore[attr-defined]
    assert a.get("/v1/clusters", headers=headers).status_code == 200
    assert cache_a.lookups == 1
    for _ in range(5):  # in steady use the entry never runs out: no request waits for a lookup
        clock_a.now += cache_a.ttl * 0.6
        r = a.get("/v1/clusters", headers=headers)
        assert r.status_code == 200
        assert r.headers[HEADER] == "1"  # the list only: the refresh runs beside the request
        cache_a.settle(60)
    assert cache_a.lookups == 6
    assert b.delete(f"/local/v1/tokens/{_own_token_id(b, token)}", headers=headers).status_code == 204
    clock_a.now += cache_a.ttl * 0.6
    assert a.get("/v1/clusters", headers=headers).status_code == 200  # from the entry, refreshing
    cache_a.settle(60)
    assert a.get("/v1/clusters", headers=headers).status_code == 401  # well before the entry's end


def test_a_lookup_started_before_a_revocation_here_is_not_remembered(
    two_apps: tuple[TestClient, TestClient, Clock, Clock, str],
) -> None:
    a, _b, _clock_a, _clock_b, token = two_apps
    cache: TokenCache = a.app.state.runtime.auth.cache  # type: ignore[attr-defined]
    real = cache.lookup
    reading, go_on = threading.Event(), threading.Event()

    def slow(t: str) -> tuple[RequestContext, datetime | None] | None:
        found = real(t)  # read while the token is still valid ...
        reading.set()
        go_on.wait(60)  # ... and the revocation's clear() comes before the answer is stored
        return found

    cache.lookup = slow
    result: list[RequestContext | None] = []
    worker = threading.Thread(target=lambda: result.append(cache.resolve_blocking(token)))
    worker.start()
    assert reading.wait(60)
    cache.clear()
    go_on.set()
    worker.join(60)
    assert result and result[0] is not None  # the request that raced the revocation
    assert cache.get(token) is None  # but nothing after it


def test_a_cancelled_waiter_leaves_the_lookup_to_the_others() -> None:
    release = threading.Event()
    ctx = RequestContext(user_id="u", project_id="p")

    def lookup(token: str) -> tuple[RequestContext, datetime | None] | None:
        release.wait(60)
        return ctx, None

    cache = TokenCache(2, lookup)

    async def scenario() -> RequestContext | None:
        first = asyncio.ensure_future(cache.resolve("t"))
        second = asyncio.ensure_future(cache.resolve("t"))
        while cache.joined("t") < 1:
            await asyncio.sleep(0.001)
        first.cancel()
        await asyncio.sleep(0)
        release.set()
        return await second

    try:
        assert asyncio.run(scenario()) is ctx
        assert cache.lookups == 1 and cache.get("t") is ctx
    finally:
        cache.close()
