"""Shared fixtures: a fresh database per test (SQLite and PostgreSQL), the app, tokens.

Every test that uses ``db_url`` (through ``settings``/``app``/``api``) runs twice: on
SQLite and on a real PostgreSQL named by ``FLOTILLA_TEST_PG_URL`` (``scripts/test.sh``
starts one and exports it). The schema is migrated once per session into a template;
SQLite tests get a copy of the template file, PostgreSQL test modules get their own
database (``CREATE DATABASE ... TEMPLATE``, needs CREATEDB; dropped after the module)
whose rows are deleted before each test. Without the variable the PostgreSQL cases are
skipped, or fail when ``CI`` is set.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

import kube_cache
from flotilla.api.app import create_app
from flotilla.db import migrate
from flotilla.db.models import Base
from flotilla.services import tokens as token_service
from flotilla.settings import ConductorSettings, Settings

pytest_plugins = ["engine_fixtures"]

with warnings.catch_warnings():  # Starlette nudges towards httpx2; httpx is what we have
    warnings.filterwarnings("ignore", message=".*starlette.testclient.*")
    from fastapi.testclient import TestClient

PG_ENV = "FLOTILLA_TEST_PG_URL"

#: name -> (user, project, role) of the tokens made by the ``tokens`` fixture.
IDENTITIES: dict[str, tuple[str, str, str]] = {
    "admin": ("admin", "admin", "admin"),
    "p1_member": ("alice", "p1", "member"),
    "p1_reader": ("rita", "p1", "reader"),
    "p2_member": ("bob", "p2", "member"),
}


def _admin_engine(url: str) -> Engine:
    return create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)


def _with_db(url: str, database: str) -> str:
    return make_url(url).set(database=database).render_as_string(hide_password=False)


def _pg_url() -> str:
    url = os.environ.get(PG_ENV)
    if url:
        return url
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI is set but {PG_ENV} is not: the PostgreSQL tests cannot run (use scripts/test.sh)")
    pytest.skip(f"PostgreSQL tests need {PG_ENV} (scripts/test.sh starts a server and sets it)")


def _drop_pg_database(admin: Engine, name: str) -> None:
    """Drop a test database even while an autovacuum worker or a leaked connection is in it.

    ``DROP DATABASE ... WITH (FORCE)`` needs the rights to signal every backend in the database,
    and an autovacuum worker belongs to no role, so a role without ``pg_signal_backend`` (the
    test role is not a superuser) fails with "must be a member of the role whose process is
    being terminated" whenever autovacuum happens to visit. A plain ``DROP DATABASE`` stops the
    autovacuum workers itself; our own role's leftover connections are terminated first.
    """
    quoted = name.replace('"', '""')
    for attempt in range(40):
        with admin.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = :name AND pid <> pg_backend_pid() AND usename = current_user"
                ),
                {"name": name},
            )
            try:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{quoted}"')
                return
            except OperationalError as exc:  # "database ... is being accessed by other users"
                if attempt == 39 or "being accessed by other users" not in str(exc):
                    raise
        time.sleep(0.25)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once per session; each test gets a copy."""
    path = tmp_path_factory.mktemp("sqlite-template") / "flotilla.db"
    engine = create_engine(f"sqlite:///{path}", poolclass=NullPool)
    migrate.upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A PostgreSQL database migrated to head once per session (copied per module)."""
    url = _pg_url()
    name = f"flotilla_t_{os.getpid()}_tpl"
    admin = _admin_engine(url)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine = create_engine(_with_db(url, name), poolclass=NullPool)
    migrate.upgrade(engine)
    engine.dispose()
    yield name
    _drop_pg_database(admin, name)
    admin.dispose()


@pytest.fixture(scope="module")
def pg_module_db(pg_template: str) -> Iterator[str]:
    """A PostgreSQL database of this test module (``CREATE DATABASE ... TEMPLATE``), dropped after it."""
    url = _pg_url()
    name = f"flotilla_t_{os.getpid()}_{secrets.token_hex(6)}"
    admin = _admin_engine(url)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
        # Throw-away data: do not wait for the WAL flush at each commit (this database only).
        conn.exec_driver_sql(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    try:
        yield _with_db(url, name)
    finally:
        _drop_pg_database(admin, name)
        admin.dispose()


def _empty_pg(url: str) -> None:
    """Delete every row (child tables first), keeping the schema: cheaper than a new database."""
    engine = create_engine(url, poolclass=NullPool)
    with engine.begin() as conn:
        known = {t.name for t in Base.metadata.sorted_tables}
        present = set(conn.scalars(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")))
        for name in sorted(present - known - {"alembic_version"}):  # tables without a model
            conn.execute(text(f'DELETE FROM "{name}"'))
        for table in reversed(Base.metadata.sorted_tables):
            if table.name in present:
                conn.execute(table.delete())
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty, migrated database private to this test.

    SQLite: a copy of the session's template file. PostgreSQL: the module's database,
    emptied before the test.
    """
    if request.param == "sqlite":
        path = tmp_path / "flotilla.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("pg_module_db")
    _empty_pg(url)
    return url


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path,
        database_url=db_url,
        auth_strategy="token",
        conductor=ConductorSettings(enabled=False),
    )


@pytest.fixture
def app(settings: Settings) -> Iterator[FastAPI]:
    application = create_app(settings)
    yield application
    application.state.runtime.db.dispose()


@pytest.fixture
def api(app: FastAPI) -> Iterator[TestClient]:
    """The app in-process (ASGI), base URL ``http://testserver``."""
    with TestClient(app) as client:
        yield client


@pytest.fixture
def tokens(app: FastAPI) -> dict[str, str]:
    """Plain tokens by name: ``admin``, ``p1_member``, ``p1_reader``, ``p2_member`` (see IDENTITIES)."""
    out: dict[str, str] = {}
    with app.state.runtime.db.session() as s:
        for key, (user, project, role) in IDENTITIES.items():
            out[key] = token_service.create(s, user_id=user, project_id=project, roles=[role])
    return out


@pytest.fixture
def auth(tokens: dict[str, str]) -> Callable[..., dict[str, str]]:
    """``auth("p1_member")`` -> headers with that token (plus a microversion when given)."""

    def headers(who: str, version: str | None = None) -> dict[str, str]:
        out = {"X-Auth-Token": tokens[who]}
        if version is not None:
            out["OpenStack-API-Version"] = f"container-infra {version}"
        return out

    return headers


@pytest.fixture
def register_image(api: TestClient, tokens: dict[str, str]) -> Callable[..., dict[str, Any]]:
    """``register_image(name, os_distro)``: ``POST /local/v1/images`` as admin; returns the image."""

    def register(name: str = "flotilla-node", os_distro: str | None = "debian") -> dict[str, Any]:
        body: dict[str, Any] = {"name": name}
        if os_distro is not None:
            body["os_distro"] = os_distro
        r = api.post("/local/v1/images", json=body, headers={"X-Auth-Token": tokens["admin"]})
        assert r.status_code == 201, r.text
        image: dict[str, Any] = r.json()
        return image

    return register


# Tests marked ``kube`` need the real Kubernetes build. scripts/test.sh runs that build (about
# 40 min cold on 2 cores) in the background next to the other tests, so these run last and
# wait for it before any of their fixtures start.
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kube = [item for item in items if item.get_closest_marker("kube")]
    if kube:
        items[:] = [item for item in items if not item.get_closest_marker("kube")] + kube


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("kube"):
        why = kube_cache.wait_for_build()
        if why:
            pytest.fail(why, pytrace=False)
