"""Engine and sessions. SQLite gets WAL, a busy timeout and foreign keys."""

from __future__ import annotations

import logging
import select
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from flotilla.datadir import private_dir, secure_sqlite
from flotilla.db import budget, statements
from flotilla.db.guard import refuse_unstorable
from flotilla.db.writer import FairLock, ProcessLock
from flotilla.settings import Settings

#: Seconds a writer waits for this process's other writers (SQLite's busy timeout is 30 s too).
WRITER_WAIT = 30.0
#: SQLite's busy timeout (ms): how long a writer waits for a writer outside Flotilla's locks.
BUSY_TIMEOUT_MS = 30_000
#: SQLite reader connections kept open. Every reader that can run at once gets one: reads
#: in worker threads (AnyIO's 40 by default), the token lookups' 8 threads, an inline read
#: on the event loop, a few more. SQLAlchemy's default (5, plus 10 opened and closed again
#: on demand) made every burst of 50 connections reopen connections (a connect and four
#: PRAGMAs each) and queue for the 15. Connections are opened only when needed; each
#: holds its own page cache (at most SQLite's default 2 MiB).
SQLITE_READERS = 64

#: Commits on :meth:`Database.dbapi_now`'s connection between two WAL checkpoints, which
#: run in a thread of their own (a template create adds a few pages to the WAL; SQLite's
#: own automatic checkpoint comes at 1,000 pages).
CHECKPOINT_EVERY = 100

log = logging.getLogger(__name__)


class Busy(Exception):
    """:meth:`Database.session_now` could not start at once: another writer holds SQLite."""


class BusyElsewhere(Busy):
    """:class:`Busy` because the writer is another process (or a writer outside Flotilla's
    locks), not one of this process's threads: this process's turn cannot be handed over
    in-process, so :mod:`flotilla.api.writes` waits for it on the event loop."""


def make_engine(
    settings: Settings,
    *,
    immediate: bool = True,
    busy_timeout_ms: int = BUSY_TIMEOUT_MS,
    pool: tuple[int, int] = (5, 10),
    autocommit: bool = False,
) -> Engine:
    """Create the engine for ``settings.db_url``; creates the SQLite directory if needed.

    ``immediate``: on SQLite, start transactions with ``BEGIN IMMEDIATE`` (writers);
    readers use a second engine with deferred BEGIN so WAL lets them run beside a writer.
    ``pool``: for an SQLite file or PostgreSQL, the connections kept open and how many
    more may be opened for a moment (SQLAlchemy's ``pool_size`` and ``max_overflow``).
    ``autocommit`` (PostgreSQL only): every statement is its own transaction (no
    ``BEGIN``, and nothing to roll back when the connection returns to the pool).
    The data dir is made 0700 and the SQLite file 0600 (see :mod:`flotilla.datadir`).

    SQLite runs in WAL mode with ``synchronous=NORMAL``: a commit appends to the WAL without
    an fsync (checkpoints sync), so a power cut may lose the last commits but never corrupts
    the database; a crash of the process loses nothing.
    """
    url = settings.db_url
    if url.startswith("sqlite"):
        private_dir(settings.data_dir)
        secure_sqlite(url)
        sized: dict[str, Any] = {}
        if make_url(url).database not in (None, "", ":memory:") and "mode=memory" not in url:
            sized = {"pool_size": pool[0], "max_overflow": pool[1]}  # (a QueuePool)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000}, **sized
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "connect")
        def _no_autobegin(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            # One writer at a time, decided at BEGIN: avoids SQLITE_BUSY upgrade deadlocks.
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    # No pool_pre_ping: its round trip (one more per checkout, a quarter of a template
    # show's time) is replaced by a look at the socket (check_alive), which sees a connection
    # the server closed (a restart, pg_terminate_backend) without asking the server.
    engine = create_engine(
        url, pool_size=pool[0], max_overflow=pool[1], **({"isolation_level": "AUTOCOMMIT"} if autocommit else {})
    )  # fmt: skip
    event.listen(engine, "checkout", check_alive)
    return engine


def check_alive(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
    """Pool checkout (PostgreSQL): raise DisconnectionError, so the pool replaces the
    connection, when the server has closed it.

    An idle connection has nothing to read: the server speaks only when asked. Anything
    readable on its socket (the ``FATAL: terminating connection`` a restart or
    ``pg_terminate_backend`` sends, then EOF), a hang-up or a connection psycopg already
    knows is broken means it cannot be used. A poll of the socket costs about a
    microsecond, where the pool's pre-ping cost a round trip to the server on every
    checkout. What it cannot see (a peer gone without a word, or a close that lands
    between this check and the statement) fails that statement, as it would after a
    pre-ping: :class:`flotilla.db.prepared.Prepared` reads retry once on a new connection.
    """
    if dbapi_conn.closed or dbapi_conn.broken:
        raise DisconnectionError("the connection is closed")
    poller = select.poll()
    poller.register(dbapi_conn.fileno(), select.POLLIN | select.POLLPRI)
    if poller.poll(0):
        raise DisconnectionError("the server closed the connection (or spoke unasked)")


class Database:
    """Owns the engine and hands out sessions; one per process."""

    def __init__(self, settings: Settings, plan: budget.ProcessPlan | None = None) -> None:
        """``plan``: this process's threads and PostgreSQL pools (:mod:`flotilla.db.budget`);
        by default a process with the API's full threads and, if enabled, a conductor.
        Each pool holds at most as many connections as the plan's threads that use it (the
        connections opened when first needed, then kept)."""
        self.settings = settings
        self.plan = plan or budget.ProcessPlan(
            api=budget.FULL, conductor=budget.conductor_threads(settings) if settings.conductor.enabled else 0
        )
        pg = self.plan
        self.engine = (
            make_engine(settings) if self.is_sqlite else make_engine(settings, pool=(pg.write_pool, 0))
        )
        self._factory = sessionmaker(self.engine, expire_on_commit=False)
        #: Reads. On PostgreSQL a pool of its own in autocommit: a read is its one SELECT
        #: (no BEGIN before it, no ROLLBACK when the connection returns), and each SELECT
        #: sees what was committed when it started, as in a READ COMMITTED transaction. In
        #: a process without the API (``plan.shared``), the write pool: its reads are few
        #: and nobody waits for them, so one pool keeps its connections down.
        if self.is_sqlite:
            self.read_engine = make_engine(settings, immediate=False, pool=(SQLITE_READERS, 8))
        elif pg.shared:
            self.read_engine = self.engine
        else:
            self.read_engine = make_engine(settings, pool=(pg.read_pool, 0), autocommit=True)
        self._read_factory = sessionmaker(self.read_engine, expire_on_commit=False)
        self._local_reads = self.is_sqlite
        #: Serializes this process's SQLite writers in arrival order (see :meth:`session`).
        self._writer = FairLock() if self.is_sqlite else None
        #: ... and the processes sharing the SQLite file (``--api-workers``, the conductor).
        self._process_lock: ProcessLock | None = None
        path = self.engine.url.database
        if self.is_sqlite and path and path != ":memory:" and not path.startswith("file:"):
            self._process_lock = ProcessLock(Path(f"{path}-writer.lock"))
        #: Writers that never wait (busy timeout 0), for :meth:`session_now`.
        self.now_engine = make_engine(settings, busy_timeout_ms=0) if self.is_sqlite else self.engine
        #: :meth:`dbapi_now`'s connection (a pool connection kept checked out), its commits
        #: since the last checkpoint, and that checkpoint's turn (one at a time).
        self._kept: Any = None
        self._kept_commits = 0
        self._checkpointing = threading.Lock()
        self._now_factory = sessionmaker(self.now_engine, expire_on_commit=False)
        for factory in (self._factory, self._read_factory, self._now_factory):
            event.listen(factory, "before_flush", refuse_unstorable)
        if settings.debug_sql_count:
            for engine in {self.engine, self.read_engine, self.now_engine}:
                statements.watch(engine)

    @property
    def is_sqlite(self) -> bool:
        return self.settings.db_url.startswith("sqlite")

    def reader_idle(self) -> bool:
        """An SQLite reader connection is idle in the pool: a short read (one indexed row)
        may run right here, on the event loop, without waiting for a connection. Always
        False on PostgreSQL (a network round trip)."""
        checkedin = getattr(self.read_engine.pool, "checkedin", None)  # QueuePool's
        return self._local_reads and checkedin is not None and int(checkedin()) > 0

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error.

        On SQLite writers take turns (one at a time, as SQLite allows anyway) in arrival
        order, within this process and across the processes sharing the file
        (:mod:`flotilla.db.writer`): a waiting writer is handed the lock the moment the
        previous one commits, where SQLite's busy handler would poll with growing sleeps
        (tens of ms each), the slow tail of concurrent writes. Blocks: call it from a
        worker thread (or see :meth:`session_now`).
        """
        with self._one_writer(), self._factory() as session, session.begin():
            yield session

    @contextmanager
    def session_now(self) -> Iterator[Session]:
        """:meth:`session`, but only if it can start without waiting; else raises
        :class:`Busy` before anything ran (then use :meth:`session` in a worker thread).

        For the event loop: an SQLite write takes a millisecond of the one core Python
        has anyway, and run there it needs no thread hop and meets no other thread at the
        GIL while it holds the writer lock (each SQLite call releases the GIL, and taking
        it back behind a busy thread costs up to the 5 ms switch interval: a convoy that
        stretched every queued write). Always :class:`Busy` on PostgreSQL, whose writes
        may wait on row locks and the network.
        """
        with self.turn_now(), self.held_session() as session:
            yield session

    @contextmanager
    def held_session(self) -> Iterator[Session]:
        """The transaction of :meth:`session_now` for a caller already holding
        :meth:`turn_now` (several may run in one turn); :class:`BusyElsewhere` before
        anything ran when a writer outside Flotilla's locks holds SQLite."""
        with self._now_factory() as session:
            tx = session.begin()
            try:
                session.connection()  # BEGIN IMMEDIATE, or SQLITE_BUSY at once
            except OperationalError as exc:
                if "locked" in str(exc) or "busy" in str(exc):
                    raise BusyElsewhere from None
                raise
            with tx:
                yield session

    @contextmanager
    def turn_now(self) -> Iterator[None]:
        """The writers' turn (in this process, then across processes) if free right now;
        else :class:`Busy` with nothing held (:class:`BusyElsewhere` when another process
        holds it). Always Busy without a writer lock (PostgreSQL)."""
        if self._writer is None or not self._writer.acquire(blocking=False):
            raise Busy
        try:
            if self._process_lock is not None and not self._process_lock.acquire(blocking=False):
                raise BusyElsewhere
            try:
                yield
            finally:
                if self._process_lock is not None:
                    self._process_lock.release()
        finally:
            self._writer.release()

    @contextmanager
    def dbapi_now(self) -> Iterator[Any]:
        """:meth:`session_now` without the ORM: a pooled DBAPI connection in one write
        transaction (``BEGIN IMMEDIATE`` taken, committed on success, rolled back on error).
        Raises :class:`Busy` before anything ran when it cannot start at once, and always
        on PostgreSQL (then :meth:`dbapi_write` in a worker thread).

        For the hottest writes (a template create): a session, its transaction objects
        and the Core execution context cost more than the two statements themselves.
        Statements run here are counted with :func:`flotilla.db.statements.tally`.

        The connection is kept checked out between calls (one per process, used only
        under the writer lock): the pool's checkout and reset on return cost as much as
        the INSERT. It is dropped (closed) when the database fails it (BEGIN other than
        "busy", COMMIT or ROLLBACK raising); an error of the caller's work only rolls back.
        """
        with self.turn_now(), self.held_dbapi() as conn:
            yield conn

    @contextmanager
    def held_dbapi(self) -> Iterator[Any]:
        """The transaction of :meth:`dbapi_now` for a caller already holding
        :meth:`turn_now` (several may run in one turn); :class:`BusyElsewhere` before
        anything ran when a writer outside Flotilla's locks holds SQLite."""
        if self._kept is None:
            self._kept = self.now_engine.raw_connection()
            # Its checkpoints run in a thread (_checkpoint_aside), not in a commit on the
            # event loop: writing the WAL back and syncing the file stalled every request
            # for tens of ms on a busy disk.
            _execute(self._kept.dbapi_connection, "PRAGMA wal_autocheckpoint=0")
        conn = self._kept.dbapi_connection
        try:
            _execute(conn, "BEGIN IMMEDIATE")  # busy timeout 0: never waits
        except self.now_engine.dialect.loaded_dbapi.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise BusyElsewhere from None
            self._drop_kept()
            raise
        try:
            yield conn
        except BaseException:
            try:
                conn.rollback()
            except BaseException:
                self._drop_kept()
                raise
            raise
        try:
            conn.commit()
        except BaseException:
            self._drop_kept()
            raise
        self._kept_commits += 1
        if self._kept_commits >= CHECKPOINT_EVERY:
            self._kept_commits = 0
            self._checkpoint_aside()

    def _checkpoint_aside(self) -> None:
        """A passive WAL checkpoint in a thread of its own (it waits for no reader or
        writer, and SQLite releases the GIL while it writes); skipped if one is running."""
        if not self._checkpointing.acquire(blocking=False):
            return

        def run() -> None:
            try:
                conn = self.read_engine.raw_connection()
                try:
                    _execute(conn, "PRAGMA wal_checkpoint(PASSIVE)")
                finally:
                    conn.close()
            except Exception:  # the next one, or any other connection's automatic one, catches up
                log.warning("WAL checkpoint failed", exc_info=True)
            finally:
                self._checkpointing.release()

        threading.Thread(target=run, name="flotilla-wal-checkpoint", daemon=True).start()

    def _drop_kept(self) -> None:
        """Close :meth:`dbapi_now`'s connection (not back to the pool: its state is unknown)."""
        kept, self._kept = self._kept, None
        if kept is not None:
            kept.invalidate()

    @contextmanager
    def dbapi_write(self) -> Iterator[Any]:
        """:meth:`dbapi_now`, waiting its turn as :meth:`session` does (call it from a worker thread)."""
        with self._one_writer():
            conn = self.engine.raw_connection()
            try:
                if self.is_sqlite:  # (PostgreSQL's driver begins at the first statement)
                    _execute(conn, "BEGIN IMMEDIATE")
                yield from _transaction(conn)
            finally:
                conn.close()

    @contextmanager
    def dbapi_one_write(self) -> Iterator[Any]:
        """:meth:`dbapi_write` for work that runs reads and at most one writing statement,
        its last (a template create: the catalog check, then the INSERT). Call it from a
        worker thread.

        On PostgreSQL the connection is in autocommit (a :attr:`read_engine` one): each
        statement is its own transaction, so the work costs its statements' round trips
        and no ``BEGIN`` or ``COMMIT``. That changes nothing the work can see: its reads
        see what was committed when each started, as they would in the READ COMMITTED
        transaction :meth:`dbapi_write` opens (which takes no locks for them either), and
        the one write commits or fails as a whole. A failed write leaves nothing behind;
        a write that succeeded is committed even if the work raises afterwards. On SQLite,
        :meth:`dbapi_write` (its transaction also takes the writer lock), as in a process
        without the API (no autocommit pool there).
        """
        if self.is_sqlite or self.plan.shared:  # (shared: the read pool is not in autocommit)
            with self.dbapi_write() as conn:
                yield conn
            return
        conn = self.read_engine.raw_connection()
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def _one_writer(self) -> Iterator[None]:
        if self._writer is None:
            yield
            return
        # Bounded like SQLite's own busy timeout: past it, go on and let SQLite decide.
        held = self._writer.acquire(timeout=WRITER_WAIT)
        try:
            if held and self._process_lock is not None:
                self._process_lock.acquire()
            try:
                yield
            finally:
                if held and self._process_lock is not None:
                    self._process_lock.release()
        finally:
            if held:
                self._writer.release()

    @contextmanager
    def reader(self) -> Iterator[Session]:
        """A session for reads only: a deferred transaction, never holding the write lock."""
        with self._read_factory() as session, session.begin():
            yield session

    def dispose(self) -> None:
        if self._kept is not None:
            self._kept.close()  # back to the pool, which the next line closes
            self._kept = None
        for engine in {self.engine, self.read_engine, self.now_engine}:
            engine.dispose()
        if self._process_lock is not None:
            self._process_lock.close()


def _transaction(conn: Any) -> Iterator[Any]:
    """Yield ``conn``, then commit; roll back if the caller's block raised."""
    try:
        yield conn
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


def _execute(conn: Any, sql: str) -> None:
    cursor = conn.cursor()
    try:
        cursor.execute(sql)
    finally:
        cursor.close()
