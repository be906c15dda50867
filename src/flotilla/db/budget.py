"""How many PostgreSQL connections each Flotilla process holds, and the threads behind them.

PostgreSQL allows 100 connections by default (``max_connections``, 3 of them kept for
superusers), and ``flotilla serve --api-workers N`` runs N API processes next to the
parent's conductor, each with its own pools. ``database_connections`` (default 80:
see :class:`flotilla.settings.Settings`) is the most one Flotilla command may hold at once, all its
processes together: ``flotilla serve`` (its API processes and its conductor) or
``flotilla conductor``. Each process's share sets its pools and, in an API process, the
threads that use them, so a pool is never smaller than the threads that check out of it:
a thread never waits for a connection (that wait was a cliff: a request held up to the
pool's 30 s timeout, then a 500), and together the processes never hold more than the
budget.

What uses a connection, one at a time per thread (nothing holds two of the same pool):

* reads (the autocommit pool, ``Database.read_engine``): the API's read threads
  (``api.deps`` read threads: shows, lists), its one-statement writes' threads (template
  creates, ``Database.dbapi_one_write``), its token lookups' threads, and the threads of
  the routes that run in AnyIO's default thread pool (``db.reader()``), and a conductor's
  threads (``db.reader()``);
* write transactions (``Database.engine``): the routes' threads (``db.session()``, the
  writes of :mod:`flotilla.api.writes` on PostgreSQL) and a conductor's threads.

A process without the API (the parent of ``--api-workers``, ``flotilla conductor``) has
one pool for both (its reads are transactions too, which costs it round trips nobody
waits for). SQLite is not budgeted (a file, no server).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sqlalchemy import Engine, text

from flotilla.settings import Settings

#: The conductor's threads that use the database besides its workers and their lease
#: renewers: heartbeat, reaper, health, notifications, images, the service load
#: balancers' loop and its 4 pool threads (``conductor.service``, ``conductor.service_lbs``).
CONDUCTOR_FIXED_THREADS = 10


class BudgetError(ValueError):
    """The configuration cannot fit in ``database_connections`` (or the server's limit)."""


@dataclass(frozen=True)
class ApiThreads:
    """Threads of one API process that use a PostgreSQL connection."""

    #: Shows and lists (``api.deps.Runtime.read_threads``).
    reads: int
    #: One-statement writes: template creates (``api.deps.Runtime.write_threads``).
    writes: int
    #: Token lookups not answered from the cache (``api.token_cache``).
    lookups: int
    #: AnyIO's default thread pool: plain ``def`` routes, dependencies and PostgreSQL's
    #: write transactions (``run_in_threadpool``); AnyIO's own default is 40.
    routes: int

    @property
    def connections(self) -> int:
        """The routes' threads read and write: they count in both pools."""
        return self.reads + self.writes + self.lookups + 2 * self.routes


#: What one API process runs when its share allows (the counts measured in issue 13).
FULL = ApiThreads(reads=8, writes=8, lookups=8, routes=8)
#: The least an API process can serve with.
LEAST = ApiThreads(reads=1, writes=1, lookups=1, routes=1)


@dataclass(frozen=True)
class ProcessPlan:
    """One process's threads and pools (PostgreSQL)."""

    #: None: no API in this process.
    api: ApiThreads | None
    #: Threads of this process's conductor that use the database (0: none).
    conductor: int

    @property
    def shared(self) -> bool:
        """One pool for reads and writes (no API here)."""
        return self.api is None

    @property
    def read_pool(self) -> int:
        api = self.api
        return self.conductor + (api.reads + api.writes + api.lookups + api.routes if api else 0)

    @property
    def write_pool(self) -> int:
        """The write transactions' pool (in a shared plan, the one pool): at least 1 (start-up)."""
        return max(1, self.conductor + (self.api.routes if self.api else 0))

    @property
    def connections(self) -> int:
        return self.write_pool if self.shared else self.read_pool + self.write_pool


@dataclass(frozen=True)
class CommandPlan:
    """Every process of one command: ``main`` (the one the command starts) and, for
    ``--api-workers`` above 1, ``workers`` copies of ``worker``."""

    budget: int
    main: ProcessPlan
    worker: ProcessPlan | None = None
    workers: int = 0

    @property
    def connections(self) -> int:
        return self.main.connections + self.workers * (self.worker.connections if self.worker else 0)


def conductor_threads(settings: Settings) -> int:
    """Threads of a conductor that use the database: each worker and its lease renewer, and
    :data:`CONDUCTOR_FIXED_THREADS`."""
    return 2 * settings.conductor.workers + CONDUCTOR_FIXED_THREADS


def fit(connections: int) -> ApiThreads | None:
    """The most threads (up to :data:`FULL`) whose pools fit in ``connections``; None if
    not even :data:`LEAST` does. Trims the largest count first (the routes' first on a
    tie: they count twice, then lookups, writes, reads)."""
    threads = FULL
    order = ("routes", "lookups", "writes", "reads")
    while threads.connections > connections:
        name = max(
            (n for n in order if getattr(threads, n) > 1), key=lambda n: getattr(threads, n), default=None
        )
        if name is None:
            return None
        threads = replace(threads, **{name: getattr(threads, name) - 1})
    return threads


def serve(settings: Settings) -> CommandPlan:
    """``flotilla serve``'s processes: one with the API and the conductor (if enabled), or
    for ``api_workers`` N above 1, a parent with the conductor (one pool) and N API
    processes sharing what is left equally.

    Raises :class:`BudgetError` naming what does not fit and what to change."""
    budget, n = settings.database_connections, settings.api_workers
    conductor = conductor_threads(settings) if settings.conductor.enabled else 0
    if settings.db_url.startswith("sqlite"):  # not budgeted: the full threads, nothing refused
        if n == 1:
            return CommandPlan(budget=budget, main=ProcessPlan(api=FULL, conductor=conductor))
        return CommandPlan(budget=budget, main=ProcessPlan(api=None, conductor=conductor),
                           worker=ProcessPlan(api=FULL, conductor=0), workers=n)  # fmt: skip
    if n == 1:
        share = budget - 2 * conductor
        api = fit(share)
        if api is None:
            raise BudgetError(_too_small(settings, f"the API needs {LEAST.connections}", 2 * conductor))
        return CommandPlan(budget=budget, main=ProcessPlan(api=api, conductor=conductor))
    main = ProcessPlan(api=None, conductor=conductor)
    api = fit((budget - main.connections) // n)
    if api is None:
        raise BudgetError(
            _too_small(settings, f"each of the {n} API processes needs {LEAST.connections}", main.connections)
        )
    return CommandPlan(budget=budget, main=main, worker=ProcessPlan(api=api, conductor=0), workers=n)


def conductor(settings: Settings) -> CommandPlan:
    """``flotilla conductor``: one process, one pool. Raises :class:`BudgetError`."""
    main = ProcessPlan(api=None, conductor=conductor_threads(settings))
    if main.connections > settings.database_connections and not settings.db_url.startswith("sqlite"):
        raise BudgetError(
            f"database_connections={settings.database_connections} is too small for a conductor with "
            f"{settings.conductor.workers} workers: it needs {main.connections} PostgreSQL connections "
            f"(2 per worker and {CONDUCTOR_FIXED_THREADS}); raise database_connections or lower conductor.workers"
        )
    return CommandPlan(budget=settings.database_connections, main=main)


def _too_small(settings: Settings, need: str, conductor: int) -> str:
    beside = f" beside the conductor's {conductor}" if conductor else ""
    return (
        f"database_connections={settings.database_connections} is too small for api_workers="
        f"{settings.api_workers}: {need} PostgreSQL connections{beside}; raise database_connections "
        f"(within the server's max_connections) or lower api_workers"
    )


def check_server(plan: CommandPlan, max_connections: int, reserved: int) -> None:
    """Raise :class:`BudgetError` when ``plan``'s connections cannot fit in what a PostgreSQL
    server with ``max_connections``, ``reserved`` of them for superusers (and roles with
    ``pg_use_reserved_connections``), lets anyone else open."""
    if plan.connections > max_connections - reserved:
        raise BudgetError(
            f"this command may hold {plan.connections} PostgreSQL connections (database_connections="
            f"{plan.budget}), more than the server allows: max_connections={max_connections}, {reserved} "
            f"reserved for superusers; lower database_connections (or api_workers) or raise max_connections"
        )


def server_limits(engine: Engine) -> tuple[int, int]:
    """The PostgreSQL server's ``max_connections`` and the connections it keeps for
    superusers (``superuser_reserved_connections``, and ``reserved_connections`` from
    PostgreSQL 16 on)."""
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT current_setting('max_connections')::int, "
                "current_setting('superuser_reserved_connections')::int, "
                "coalesce(current_setting('reserved_connections', true), '0')::int"
            )
        ).one()
    return int(row[0]), int(row[1]) + int(row[2])
