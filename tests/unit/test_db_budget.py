"""``database_connections``: every process's pools and threads come from one budget.

* The plans of ``flotilla serve`` for every ``--api-workers`` the default budget allows
  stay within it, and no pool is smaller than the threads that use it.
* A real Database and app on PostgreSQL get exactly those pools and thread limits (the
  routes' AnyIO pool included); a process without the API has one pool.
* What cannot fit is refused with words that say what to change: too many API processes
  for the budget, a conductor too big for it, a budget above the server's max_connections
  (asked of the real server). ``tests/integration/test_db_budget_load.py`` runs the real
  multi-process server under load and counts its connections in ``pg_stat_activity``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from anyio import to_thread
from fastapi import FastAPI
from fastapi.testclient import TestClient

from flotilla.api.app import create_app
from flotilla.db import budget
from flotilla.db.engine import Database
from flotilla.settings import ConductorSettings, Settings

PG = "postgresql+psycopg://u:p@127.0.0.1:1/x"  # (plans only: never connected)


def _threads_fit(plan: budget.ProcessPlan) -> None:
    api = plan.api
    if api is None:
        assert plan.shared and plan.write_pool >= plan.conductor
        return
    assert plan.read_pool >= api.reads + api.writes + api.lookups + api.routes + plan.conductor
    assert plan.write_pool >= api.routes + plan.conductor
    assert min(api.reads, api.writes, api.lookups, api.routes) >= 1


@pytest.mark.parametrize("workers", range(1, 14))
def test_default_budget_fits_up_to_13_api_workers(workers: int) -> None:
    plan = budget.serve(Settings(database_url=PG, api_workers=workers))
    assert plan.connections <= 80
    _threads_fit(plan.main)
    if workers == 1:
        assert plan.main.api == budget.FULL and plan.worker is None
    else:
        assert plan.main.api is None and plan.worker is not None and plan.workers == workers
        _threads_fit(plan.worker)


def test_a_budget_too_small_is_refused_with_what_to_change() -> None:
    with pytest.raises(budget.BudgetError) as info:
        budget.serve(Settings(database_url=PG, api_workers=14))
    assert str(info.value) == (
        "database_connections=80 is too small for api_workers=14: each of the 14 API processes needs 5 "
        "PostgreSQL connections beside the conductor's 14; raise database_connections (within the "
        "server's max_connections) or lower api_workers"
    )
    with pytest.raises(budget.BudgetError, match="database_connections=20 is too small for api_workers=1"):
        budget.serve(Settings(database_url=PG, database_connections=20))
    # Without a conductor there is room for more API processes (the parent keeps one connection).
    plan = budget.serve(Settings(database_url=PG, api_workers=14, conductor=ConductorSettings(enabled=False)))
    assert plan.connections <= 80 and plan.main.connections == 1
    with pytest.raises(budget.BudgetError, match="a conductor with 40 workers: it needs 90"):
        budget.conductor(Settings(database_url=PG, conductor=ConductorSettings(workers=40)))
    # SQLite is not budgeted.
    assert budget.serve(Settings(database_url="sqlite:///x.db", api_workers=64)).workers == 64


def test_a_larger_budget_gives_more_threads_up_to_full() -> None:
    small = budget.serve(Settings(database_url=PG, api_workers=4)).worker
    large = budget.serve(Settings(database_url=PG, api_workers=4, database_connections=400)).worker
    assert small is not None and large is not None
    assert small.connections < large.connections and large.api == budget.FULL


@pytest.fixture
def pg_url(db_url: str) -> str:
    if db_url.startswith("sqlite"):
        pytest.skip("PostgreSQL's pools and server limits")
    return db_url


def test_the_database_and_app_get_the_plans_pools_and_threads(pg_url: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=pg_url, api_workers=3)
    plan = budget.serve(settings)
    assert plan.worker is not None and plan.worker.api is not None
    api = plan.worker.api
    app: FastAPI = create_app(settings, plan=plan.worker)
    rt = app.state.runtime
    try:
        assert (rt.db.read_engine.pool.size(), rt.db.read_engine.pool._max_overflow) == (
            plan.worker.read_pool,
            0,
        )
        assert (rt.db.engine.pool.size(), rt.db.engine.pool._max_overflow) == (plan.worker.write_pool, 0)
        assert rt.read_threads.total_tokens == api.reads
        assert rt.write_threads.total_tokens == api.writes
        assert rt.auth.cache.threads == api.lookups
        with TestClient(app) as client:  # the lifespan sets the routes' thread pool
            seen = client.portal.call(lambda: _default_tokens())  # type: ignore[union-attr]
            assert seen == api.routes
    finally:
        rt.db.dispose()
    main = Database(settings, plan.main)
    try:
        assert main.read_engine is main.engine and main.engine.pool.size() == plan.main.connections
    finally:
        main.dispose()


async def _default_tokens() -> float:
    return to_thread.current_default_thread_limiter().total_tokens


def test_a_budget_above_the_servers_max_connections_is_refused(pg_url: str) -> None:
    db = Database(Settings(database_url=pg_url))
    try:
        max_connections, reserved = budget.server_limits(db.engine)
    finally:
        db.dispose()
    assert max_connections >= 1 and reserved >= 0
    fits = budget.serve(Settings(database_url=pg_url, database_connections=max_connections - reserved))
    budget.check_server(fits, max_connections, reserved)
    over = budget.serve(
        Settings(database_url=pg_url, api_workers=13, database_connections=2 * max_connections)
    )
    assert over.connections > max_connections - reserved
    with pytest.raises(budget.BudgetError, match=f"max_connections={max_connections}, {reserved} reserved"):
        budget.check_server(over, max_connections, reserved)
