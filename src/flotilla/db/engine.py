"""Engine and sessions. SQLite gets WAL, a busy timeout and foreign keys."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from flotilla.datadir import private_dir, secure_sqlite
from flotilla.db import statements
from flotilla.db.guard import refuse_unstorable
from flotilla.settings import Settings

#: Seconds a writer waits for this process's other writers (SQLite's busy timeout is 30 s too).
WRITER_WAIT = 30.0


def make_engine(settings: Settings, *, immediate: bool = True) -> Engine:
    """Create the engine for ``settings.db_url``; creates the SQLite directory if needed.

    ``immediate``: on SQLite, start transactions with ``BEGIN IMMEDIATE`` (writers);
    readers use a second engine with deferred BEGIN so WAL lets them run beside a writer.
    The data dir is made 0700 and the SQLite file 0600 (see :mod:`flotilla.datadir`).
    """
    url = settings.db_url
    if url.startswith("sqlite"):
        private_dir(settings.data_dir)
        secure_sqlite(url)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
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
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


class Database:
    """Owns the engine and hands out sessions; one per process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = make_engine(settings)
        self._factory = sessionmaker(self.engine, expire_on_commit=False)
        self.read_engine = make_engine(settings, immediate=False) if self.is_sqlite else self.engine
        self._read_factory = sessionmaker(self.read_engine, expire_on_commit=False)
        #: Serializes this process's SQLite writers (see :meth:`session`); a no-op elsewhere.
        self._writer = threading.RLock() if self.is_sqlite else None
        for factory in (self._factory, self._read_factory):
            event.listen(factory, "before_flush", refuse_unstorable)
        if settings.debug_sql_count:
            statements.watch(self.engine)
            statements.watch(self.read_engine)

    @property
    def is_sqlite(self) -> bool:
        return self.settings.db_url.startswith("sqlite")

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error.

        On SQLite the threads of this process take turns (one writer at a time, as SQLite
        allows anyway): a waiting writer is woken the moment the previous one commits,
        where SQLite's busy handler would poll with growing sleeps (tens of ms each),
        the slow tail of concurrent writes. Other processes still meet the busy timeout.
        """
        with self._one_writer(), self._factory() as session, session.begin():
            yield session

    @contextmanager
    def _one_writer(self) -> Iterator[None]:
        if self._writer is None:
            yield
            return
        # Bounded like SQLite's own busy timeout: past it, go on and let SQLite decide.
        held = self._writer.acquire(timeout=WRITER_WAIT)
        try:
            yield
        finally:
            if held:
                self._writer.release()

    @contextmanager
    def reader(self) -> Iterator[Session]:
        """A session for reads only: a deferred transaction, never holding the write lock."""
        with self._read_factory() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
        self.read_engine.dispose()
