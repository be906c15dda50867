"""Running a route's write transaction: on the event loop when SQLite's writer is free.

``await write(db, work)`` runs ``work(session)`` in one write transaction and returns its
result (committed; the ORM objects stay readable). On SQLite with no other writer in the
way it runs right here, on the event loop (``Database.session_now``): no worker-thread
hop, no queue behind the thread pool, no other thread to meet at the GIL while the writer
lock is held. On PostgreSQL it runs in a worker thread with ``Database.session``.
``write_dbapi`` and ``write_one`` do the same on a DBAPI connection; ``write_one``, for work
with one write, runs it on PostgreSQL without a transaction around it (autocommit).

When SQLite's writer is busy:

* *held by another thread of this process* (the conductor, a write that went to a
  thread): the write goes to a worker thread and waits its turn there
  (``Database.session``, handed over in arrival order the moment the holder commits);
* *held by another process* (``--api-workers``; ``BusyElsewhere``): the write joins this
  process's queue of writes waiting for that process, and stays on the event loop. One
  poller per process tries the turn every :data:`POLL_S` (a non-blocking ``flock``, a
  microsecond) while the queue is not empty, and when it gets the turn runs every queued
  write in arrival order in that one turn, then lets go. A worker thread blocked in
  ``flock`` instead would hold the cross-process lock while it waits to get the GIL
  back from this busy event loop (up to the 5 ms switch interval for every SQLite call),
  so the other process would wait on a lock nobody was using, and every later write of
  this process would queue behind that thread: ``--api-workers 2`` made creates slower
  than one process. Here the lock is taken only when the writes can run at once, and
  each turn carries the whole queue. A write arriving while the queue is not empty joins
  it (never overtakes it).

``work`` must not block on anything but the database (no HTTP, no Docker): it may run on
the event loop. It runs in the context of the request that asked for it (the statement
counter of ``debug_sql_count`` included).
"""

from __future__ import annotations

import asyncio
import contextvars
import weakref
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from anyio import CapacityLimiter, to_thread
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from flotilla.db.engine import Busy, BusyElsewhere, Database

T = TypeVar("T")

#: Seconds between two tries of the writers' turn while this process's writes wait for
#: another process (the event loop's timers have millisecond resolution).
POLL_S = 0.001
#: Writes run in one turn at most: the other processes' writers get the turn in between.
TURN_WRITES = 64


async def write(db: Database, work: Callable[[Session], T]) -> T:
    return await _dispatch(db, work, db.session_now, _in_session, _held_session)


async def _dispatch(
    db: Database,
    work: Callable[[Any], T],
    now: Callable[[], AbstractContextManager[Any]],
    threaded: Callable[[Database, Callable[[Any], T]], T],
    held: Callable[[Database, Callable[[Any], T]], T],
) -> T:
    """Where ``work`` runs (see the module docstring), for a session or a DBAPI connection:
    ``now()`` on the event loop when SQLite's writer is free, ``threaded`` in a worker
    thread, ``held`` in a turn of this process's queue."""
    if db.is_sqlite:
        queue = _queue(db)
        if not queue.items:
            try:
                with now() as target:
                    return work(target)
            except BusyElsewhere:
                pass  # raised before work ran: wait for the other process below
            except Busy:  # (raised before work ran) one of this process's threads writes
                return await run_in_threadpool(threaded, db, work)
        return await queue.wait(db, lambda: held(db, work))
    return await run_in_threadpool(threaded, db, work)


def _in_session(db: Database, work: Callable[[Session], T]) -> T:
    with db.session() as session:
        return work(session)


def _held_session(db: Database, work: Callable[[Session], T]) -> T:
    with db.held_session() as session:
        return work(session)


async def write_dbapi(db: Database, work: Callable[[Any], T]) -> T:
    """:func:`write` on a DBAPI connection (:meth:`Database.dbapi_now`, else
    :meth:`Database.dbapi_write` in a worker thread): ``work(connection)`` in one write
    transaction, committed when it returns."""
    return await _dispatch(db, work, db.dbapi_now, _on_connection, _held_dbapi)


def _on_connection(db: Database, work: Callable[[Any], T]) -> T:
    with db.dbapi_write() as conn:
        return work(conn)


def _held_dbapi(db: Database, work: Callable[[Any], T]) -> T:
    with db.held_dbapi() as conn:
        return work(conn)


@dataclass(slots=True)
class _Waiting:
    run: Callable[[], Any]
    done: asyncio.Future[Any]
    context: contextvars.Context


@dataclass(eq=False)
class _Queue:
    """One process's (one event loop's) writes waiting for another process's writer."""

    loop: asyncio.AbstractEventLoop
    items: deque[_Waiting] = field(default_factory=deque)
    poller: asyncio.Task[None] | None = None

    async def wait(self, db: Database, run: Callable[[], T]) -> T:
        """``run()`` (one transaction, raising :class:`Busy` before it began if SQLite is
        taken) in a turn of this queue; its result or exception."""
        done: asyncio.Future[T] = self.loop.create_future()
        self.items.append(_Waiting(run, done, contextvars.copy_context()))
        if self.poller is None:
            self.poller = self.loop.create_task(self._poll(db))
        return await done

    async def _poll(self, db: Database) -> None:
        try:
            while self.items:
                try:
                    with db.turn_now():
                        self._run_turn()
                except Busy:
                    pass
                if self.items:
                    await asyncio.sleep(POLL_S)
        finally:
            self.poller = None
            for item in self.items:  # only if this task was cancelled (the loop is closing)
                item.done.cancel()

    def _run_turn(self) -> None:
        """Run the queued writes in order, holding the turn; stops at a :class:`Busy`
        (SQLite held by a writer outside Flotilla's locks), leaving that write queued."""
        for _ in range(TURN_WRITES):
            if not self.items:
                return
            item = self.items[0]
            if item.done.cancelled():  # its request is gone: never started, never will
                self.items.popleft()
                continue
            try:
                result = item.context.run(item.run)
            except Busy:
                return
            except Exception as exc:  # the write's own error (rolled back): its caller's
                self.items.popleft()
                item.done.set_exception(exc)
                continue
            self.items.popleft()
            item.done.set_result(result)


#: Each Database's queue (holding no reference to it: it goes with its Database).
_queues: weakref.WeakKeyDictionary[Database, _Queue] = weakref.WeakKeyDictionary()


def _queue(db: Database) -> _Queue:
    """``db``'s queue on the running event loop."""
    loop = asyncio.get_running_loop()
    queue = _queues.get(db)
    if queue is None or queue.loop is not loop:
        queue = _queues[db] = _Queue(loop)
    return queue


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
