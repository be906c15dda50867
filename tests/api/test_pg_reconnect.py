"""PostgreSQL closing the API's connections (a restart, ``pg_terminate_backend``) costs users
no errors: the pools find closed connections without a round trip and open new ones, and a
prepared read whose connection is closed under it runs again on another.

PostgreSQL only (SQLite has no server to close connections). The server's side is real:
``pg_terminate_backend`` sends the same ``FATAL: terminating connection due to
administrator command`` a restart sends to every client, then closes the socket.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, event, literal_column, select, text
from sqlalchemy.pool import NullPool

from flotilla.db import engine as db_engine
from flotilla.db import models as m
from flotilla.db import statements
from flotilla.db.engine import Database
from flotilla.db.prepared import Prepared

Auth = Callable[..., dict[str, str]]
_TABLE = m.ClusterTemplate.__table__
_NAMES = Prepared(select(_TABLE.c.name))


def _database(app: FastAPI) -> Database:
    db: Database = app.state.runtime.db
    if db.is_sqlite:
        pytest.skip("PostgreSQL only: SQLite has no server to close connections")
    return db


def _backend_pids(admin: Engine) -> set[int]:
    with admin.connect() as conn:
        return set(
            conn.scalars(
                text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                    " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
                )
            )
        )


def _terminate_all(admin: Engine) -> int:
    """Close every other connection to this database, as a restart would; wait until they
    are gone. Returns how many there were."""
    pids = _backend_pids(admin)
    with admin.connect() as conn:
        for pid in pids:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    deadline = time.monotonic() + 10
    while _backend_pids(admin) & pids:
        assert time.monotonic() < deadline, "the backends did not end"
        time.sleep(0.02)
    return len(pids)


@pytest.fixture
def admin_engine(app: FastAPI) -> Any:
    db = _database(app)
    engine = create_engine(db.engine.url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


def _template(api: TestClient, auth: Auth, name: str) -> dict[str, Any]:
    r = api.post(
        "/v1/clustertemplates", json={"name": name, "coe": "swarm", "image_id": "flotilla-node"},
        headers=auth("p1_member"),
    )  # fmt: skip
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def test_every_kind_of_request_works_after_the_server_closed_every_connection(
    app: FastAPI, api: TestClient, auth: Auth, register_image: Callable[..., Any], admin_engine: Engine
) -> None:
    register_image()
    first = _template(api, auth, "before")
    # Use the pools: prepared reads, an ORM read session, an ORM write, the token lookups.
    for who in ("p1_member", "admin"):
        assert api.get(f"/v1/clustertemplates/{first['uuid']}", headers=auth(who)).status_code == 200
        assert api.get("/v1/clustertemplates", headers=auth(who)).status_code == 200
    assert api.get("/v1/stats", headers=auth("admin")).status_code == 200
    patch = [{"op": "replace", "path": "/name", "value": "renamed"}]
    assert (
        api.patch(f"/v1/clustertemplates/{first['uuid']}", json=patch, headers=auth("p1_member")).status_code
        == 200
    )

    assert _terminate_all(admin_engine) >= 2  # the read and the write pools' connections

    # p1_reader's token was never looked up: its lookup needs a connection too.
    for who in ("p1_reader", "p1_member"):
        r = api.get(f"/v1/clustertemplates/{first['uuid']}", headers=auth(who))
        assert r.status_code == 200, r.text
        assert r.json()["name"] == "renamed"
    assert api.get("/v1/clustertemplates", headers=auth("p1_member")).status_code == 200
    r = api.get("/v1/stats", headers=auth("admin"))  # an ORM read session: no retry, the pool's check only
    assert r.status_code == 200, r.text
    second = _template(api, auth, "after")  # the create: catalog check and INSERT in autocommit
    patch = [{"op": "replace", "path": "/name", "value": "again"}]
    r = api.patch(f"/v1/clustertemplates/{second['uuid']}", json=patch, headers=auth("p1_member"))
    assert r.status_code == 200, r.text  # an ORM write transaction on the write pool
    shown = api.get(f"/v1/clustertemplates/{second['uuid']}", headers=auth("p1_member"))
    assert shown.status_code == 200 and shown.json()["name"] == "again"


def test_a_prepared_read_whose_connection_was_closed_under_it_runs_again(
    app: FastAPI, api: TestClient, auth: Auth, register_image: Callable[..., Any], admin_engine: Engine
) -> None:
    """The pool's check happens at checkout; a close that lands after it is found by the
    statement. The check is taken off the read pool here, so that the pooled connection
    reaches its statement closed: what a close right after the check looks like."""
    db = _database(app)
    register_image()
    _template(api, auth, "t")
    engine = db.read_engine
    event.remove(engine, "checkout", db_engine.check_alive)
    try:
        engine.dispose()  # a new pool (the check stays off): one connection after the next read
        assert [r["name"] for r in _NAMES.rows(engine, {})] == ["t"]
        assert engine.pool.checkedin() == 1  # type: ignore[attr-defined]
        assert _terminate_all(admin_engine) >= 1
        with statements.counting() as ran:
            assert [r["name"] for r in _NAMES.rows(engine, {})] == ["t"]
        assert ran == [2]  # on the closed connection, then on a new one
        with statements.counting() as ran:
            assert [r["name"] for r in _NAMES.rows(engine, {})] == ["t"]
        assert ran == [1]  # the closed one was dropped, not pooled again
    finally:
        event.listen(engine, "checkout", db_engine.check_alive)


def test_a_failed_read_that_is_not_a_closed_connection_is_not_run_again(app: FastAPI) -> None:
    db = _database(app)
    boom = Prepared(select(literal_column("1/0").label("boom")))
    with statements.counting() as ran, pytest.raises(db.read_engine.dialect.loaded_dbapi.Error) as raised:
        boom.rows(db.read_engine, {})
    assert "division by zero" in str(raised.value)
    assert ran == [1]
