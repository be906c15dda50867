"""Running a route's write transaction: on the event loop when SQLite's writer is free.

``await write(db, work)`` runs ``work(session)`` in one write transaction and returns its
result (committed; the ORM objects stay readable). On SQLite with no other writer in the
way it runs right here, on the event loop (``Database.session_now``): no worker-thread
hop, no queue behind the thread pool, no other thread to meet at the GIL while the writer
lock is held. Otherwise (another writer holds the lock, or PostgreSQL) it runs in a worker
thread with ``Database.session``, which waits its turn in arrival order. ``write_dbapi`` and
``write_one`` do the same on a DBAPI connection; ``write_one``, for work with one write, runs
it on PostgreSQL without a transaction around it (autocommit).

``work`` must not block on anything but the database (no HTTP, no Docker): it may run on
the event loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from anyio import CapacityLimiter, to_thread
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from flotilla.db.engine import Busy, Database

T = TypeVar("T")


async def write(db: Database, work: Callable[[Session], T]) -> T:
    try:
        with db.session_now() as session:
            return work(session)
    except Busy:
        pass  # raised before work ran: nothing happened yet
    return await run_in_threadpool(_in_session, db, work)


def _in_session(db: Database, work: Callable[[Session], T]) -> T:
    with db.session() as session:
        return work(session)


async def write_dbapi(db: Database, work: Callable[[Any], T]) -> T:
    """:func:`write` on a DBAPI connection (:meth:`Database.dbapi_now`, else
    :meth:`Database.dbapi_write` in a worker thread): ``work(connection)`` in one write
    transaction, committed when it returns."""
    try:
        with db.dbapi_now() as conn:
            return work(conn)
    except Busy:
        pass  # raised before work ran: nothing happened yet
    return await run_in_threadpool(_on_connection, db, work)


def _on_connection(db: Database, work: Callable[[Any], T]) -> T:
    with db.dbapi_write() as conn:
        return work(conn)


async def write_one(db: Database, work: Callable[[Any], T], limiter: CapacityLimiter | None = None) -> T:
    """:func:`write_dbapi` for work that runs reads and at most one writing statement, its
    last: on PostgreSQL in autocommit, in a worker thread of ``limiter``
    (:meth:`Database.dbapi_one_write`: no ``BEGIN``/``COMMIT`` round trips), on SQLite
    :func:`write_dbapi`."""
    if db.is_sqlite:
        return await write_dbapi(db, work)
    return await to_thread.run_sync(_on_one_write_connection, db, work, limiter=limiter)


def _on_one_write_connection(db: Database, work: Callable[[Any], T]) -> T:
    with db.dbapi_one_write() as conn:
        return work(conn)
