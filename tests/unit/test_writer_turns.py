"""SQLite writers take turns (flotilla.db.writer, Database.session / session_now).

* FairLock hands the lock to its waiters in arrival order, lets its holder re-enter, and
  never lets a non-blocking newcomer overtake the queue.
* The writer file lock excludes another process (a real second process holds it).
* ``session_now`` refuses at once (Busy, nothing run) while another writer holds the
  database, and ``api.writes.write`` then waits its turn in a worker thread and commits.
* Writes from several processes on one SQLite file all commit (never "database is locked"),
  from worker threads (``Database.session``) and from event loops (``api.writes``).
* An event loop's writes that meet another process's writer queue on that loop (no worker
  thread) and all run, in arrival order, once that process lets go.

Real threads, real processes, a real SQLite file; nothing is timed.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from flotilla.api import writes
from flotilla.api.writes import write, write_dbapi
from flotilla.db import models as m
from flotilla.db.engine import Busy, Database
from flotilla.db.writer import FairLock, ProcessLock
from flotilla.services import bootstrap
from flotilla.settings import ConductorSettings, Settings


def _settings(data_dir: Path) -> Settings:
    return Settings(
        data_dir=data_dir, enabled_providers=["fake"], default_provider="fake",
        conductor=ConductorSettings(enabled=False),
    )  # fmt: skip


def _wait_queued(lock: FairLock, n: int) -> None:
    for _ in range(10_000):
        if len(lock._waiters) >= n:
            return
        threading.Event().wait(0.001)
    raise AssertionError(f"{n} waiters never queued")


def test_fair_lock_serves_waiters_in_arrival_order() -> None:
    lock = FairLock()
    assert lock.acquire()
    order: list[int] = []

    def waiter(k: int) -> None:
        assert lock.acquire()
        order.append(k)
        lock.release()

    threads = []
    for k in range(6):
        t = threading.Thread(target=waiter, args=(k,))
        t.start()
        _wait_queued(lock, k + 1)  # queued before the next one starts
        threads.append(t)
    assert lock.acquire(blocking=False)  # the holder re-enters
    lock.release()
    lock.release()
    for t in threads:
        t.join(10)
    assert order == list(range(6))


def test_a_newcomer_does_not_overtake_the_queue_and_a_wait_can_time_out() -> None:
    lock = FairLock()
    assert lock.acquire()
    got: list[bool] = []
    other = threading.Thread(target=lambda: got.append(lock.acquire(timeout=0.05)))
    other.start()
    other.join(10)
    assert got == [False] and not lock._waiters  # timed out, and left the queue
    holding, go = threading.Event(), threading.Event()

    def waiter() -> None:
        lock.acquire()
        holding.set()
        go.wait(10)
        lock.release()

    def try_now() -> bool:
        """A non-blocking attempt from a third thread (released at once if it got it)."""
        box: list[bool] = []

        def attempt() -> None:
            box.append(lock.acquire(blocking=False))
            if box[0]:
                lock.release()

        t = threading.Thread(target=attempt)
        t.start()
        t.join(10)
        return box[0]

    t = threading.Thread(target=waiter)
    t.start()
    _wait_queued(lock, 1)
    assert not try_now()  # held by this thread, one waiter queued
    lock.release()  # handed straight to the waiter
    assert not try_now()
    assert holding.wait(10)
    go.set()
    t.join(10)
    assert lock.acquire(blocking=False)
    lock.release()
    with pytest.raises(RuntimeError):
        lock.release()


def _hold_file_lock(path: str, held: Any, done: Any) -> None:
    lock = ProcessLock(Path(path))
    lock.acquire()
    held.set()
    done.wait(30)
    lock.release()


def test_the_writer_file_lock_excludes_another_process(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    held, done = ctx.Event(), ctx.Event()
    path = tmp_path / "db-writer.lock"
    proc = ctx.Process(target=_hold_file_lock, args=(str(path), held, done))
    proc.start()
    try:
        assert held.wait(60)
        mine = ProcessLock(path)
        assert not mine.acquire(blocking=False)
        done.set()
        assert mine.acquire()  # waits for the other process to let go
        mine.release()
        mine.close()
    finally:
        done.set()
        proc.join(30)


def test_session_now_is_busy_while_another_writer_holds_sqlite_and_write_waits_its_turn(
    tmp_path: Path,
) -> None:
    db = Database(_settings(tmp_path))
    bootstrap.prepare_database(db)
    try:
        inside, release = threading.Event(), threading.Event()

        def long_writer() -> None:
            with db.session() as s:
                s.add(m.Flavor(uuid="00000000-0000-4000-8000-00000000000a", name="held", vcpus=1, ram_mb=64))
                s.flush()
                inside.set()
                release.wait(30)

        t = threading.Thread(target=long_writer)
        t.start()
        assert inside.wait(30)
        ran: list[str] = []
        with pytest.raises(Busy), db.session_now():
            ran.append("body")  # never reached
        assert ran == []

        def work(s: object) -> str:
            assert hasattr(s, "add")
            s.add(m.Flavor(uuid="00000000-0000-4000-8000-00000000000b", name="queued", vcpus=1, ram_mb=64))  # type: ignore[attr-defined]
            return "done"

        async def main() -> str:
            task = asyncio.ensure_future(write(db, work))
            await asyncio.sleep(0.05)
            assert not task.done()  # waiting its turn, not failed
            release.set()
            return await task

        assert asyncio.run(main()) == "done"
        t.join(30)
        with db.reader() as s:
            names = set(s.scalars(select(m.Flavor.name)))
        assert {"held", "queued"} <= names
        with db.session_now() as s:  # free again: runs at once
            s.add(m.Flavor(uuid="00000000-0000-4000-8000-00000000000c", name="now", vcpus=1, ram_mb=64))
        with db.reader() as s:
            assert s.scalar(select(func.count()).where(m.Flavor.name == "now")) == 1
    finally:
        db.dispose()


def _insert_many(data_dir: str, prefix: str, count: int) -> None:
    db = Database(_settings(Path(data_dir)))
    try:
        for i in range(count):
            with db.session() as s:
                s.add(m.Flavor(uuid=f"{prefix}-{i:04d}", name=f"{prefix}-{i}", vcpus=1, ram_mb=64))
    finally:
        db.dispose()


def test_writes_from_several_processes_all_commit(tmp_path: Path) -> None:
    db = Database(_settings(tmp_path))
    bootstrap.prepare_database(db)
    before = _flavors(db)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_insert_many, args=(str(tmp_path), f"p{k}", 150)) for k in range(3)]
    for p in procs:
        p.start()
    _insert_many(str(tmp_path), "parent", 150)  # the parent writes at the same time
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]  # an OperationalError would have exited 1
    assert _flavors(db) - before == 600
    db.dispose()


def _flavors(db: Database) -> int:
    with db.reader() as s:
        return int(s.scalar(select(func.count()).select_from(m.Flavor)) or 0)


def _flavor_sql(name: str) -> tuple[str, tuple[str, str, str]]:
    return (
        "INSERT INTO flavors (uuid, name, vcpus, ram_mb, disk_gb, created_at) VALUES (?, ?, 1, 64, 0, ?)",
        (f"u-{name}", name, "2026-01-01 00:00:00.000000"),
    )


async def _loop_writes(db: Database, prefix: str, count: int) -> list[str]:
    """``count`` writes at once on this event loop, alternately through ``write`` (ORM) and
    ``write_dbapi`` (raw connection); the names in the order they were asked for."""

    def orm(name: str) -> Any:
        def work(s: Any) -> str:
            s.add(m.Flavor(uuid=f"u-{name}", name=name, vcpus=1, ram_mb=64))
            return name

        return work

    def raw(name: str) -> Any:
        def work(conn: Any) -> str:
            conn.execute(*_flavor_sql(name))
            return name

        return work

    names = [f"{prefix}-{i:04d}" for i in range(count)]
    return list(
        await asyncio.gather(
            *(write(db, orm(n)) if i % 2 else write_dbapi(db, raw(n)) for i, n in enumerate(names))
        )
    )


def _loop_writer(data_dir: str, prefix: str, count: int, queued: Any, go: Any) -> None:
    """A process whose event loop asks for ``count`` writes at once (see the test below)."""
    db = Database(_settings(Path(data_dir)))
    try:

        async def main() -> list[str]:
            task = asyncio.ensure_future(_loop_writes(db, prefix, count))
            if queued is not None:
                for _ in range(10_000):
                    await asyncio.sleep(0.001)
                    if len(writes._queue(db).items) == count:
                        break
                assert len(writes._queue(db).items) == count  # every write waits on this loop
                assert not task.done()
                queued.set()
                go.wait(60)
            return await task

        assert asyncio.run(main()) == [f"{prefix}-{i:04d}" for i in range(count)]
    finally:
        db.dispose()


def test_loop_writes_wait_for_another_process_in_order_without_threads(tmp_path: Path) -> None:
    """This process holds the writers' turn; the child's 40 writes all queue on its event
    loop (a worker thread would have left the queue), nothing is written while the turn is
    held here, and once it is let go every write commits, in the order asked."""
    db = Database(_settings(tmp_path))
    bootstrap.prepare_database(db)
    ctx = multiprocessing.get_context("spawn")
    queued, go = ctx.Event(), ctx.Event()
    with db.turn_now():
        proc = ctx.Process(target=_loop_writer, args=(str(tmp_path), "q", 40, queued, go))
        proc.start()
        try:
            while not queued.wait(0.2):
                assert proc.is_alive(), f"the writer exited with {proc.exitcode} before its writes queued"
        finally:
            go.set()
        with db.reader() as s:
            assert s.scalar(select(func.count()).where(m.Flavor.name.like("q-%"))) == 0
    proc.join(120)
    assert proc.exitcode == 0
    with db.reader() as s:
        names = list(s.scalars(select(m.Flavor.name).where(m.Flavor.name.like("q-%")).order_by(m.Flavor.id)))
    assert names == [f"q-{i:04d}" for i in range(40)]
    db.dispose()


def test_loop_writes_from_several_processes_all_commit(tmp_path: Path) -> None:
    db = Database(_settings(tmp_path))
    bootstrap.prepare_database(db)
    before = _flavors(db)
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_loop_writer, args=(str(tmp_path), f"l{k}", 200, None, None)) for k in range(3)
    ]
    for p in procs:
        p.start()
    _insert_many(str(tmp_path), "threads", 150)  # and worker-thread writes at the same time
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]  # an OperationalError would have exited 1
    assert _flavors(db) - before == 750
    db.dispose()
