"""Taking turns at the one SQLite writer: first come, first served, within and across processes.

SQLite lets one transaction write at a time. Left to SQLite, a waiting writer polls in its
busy handler with growing sleeps (1 ms up to 100 ms each), so under concurrent writes some
requests wait far longer than the queue in front of them: the slow tail of issue 13. Here
a writer instead

* queues on :class:`FairLock` behind this process's other writers, in arrival order, and
  is handed the lock by the previous holder the moment it finishes (no lock convoy, no
  starvation: the wait is bounded by the queue in front of it);
* then takes an exclusive ``flock`` on ``<database>-writer.lock``, which the kernel hands
  to another process's writer as soon as it is released (``--api-workers`` processes and
  the conductor share one SQLite file without sleeping in SQLite's busy handler).

Writers that do not take these locks (the CLI working on the database) still meet
``BEGIN IMMEDIATE`` and SQLite's busy timeout, so nobody is ever told "database is locked"
within that timeout. PostgreSQL needs none of this.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections import deque
from pathlib import Path


class FairLock:
    """A reentrant lock handed to its waiters in arrival order.

    ``acquire(blocking=False)`` fails when the lock is held or anyone is already waiting
    (a newcomer never overtakes the queue).
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._owner: int | None = None
        self._depth = 0
        self._waiters: deque[tuple[int, threading.Lock]] = deque()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        me = threading.get_ident()
        with self._mutex:
            if self._owner == me:
                self._depth += 1
                return True
            if self._owner is None and not self._waiters:
                self._owner, self._depth = me, 1
                return True
            if not blocking:
                return False
            baton = threading.Lock()
            baton.acquire()
            self._waiters.append((me, baton))
        if baton.acquire(timeout=timeout):
            return True  # handed over by release(): _owner is already me
        with self._mutex:
            try:
                self._waiters.remove((me, baton))
            except ValueError:
                return True  # handed over just as the wait timed out
            return False

    def release(self) -> None:
        with self._mutex:
            if self._owner != threading.get_ident():
                raise RuntimeError("release of a FairLock not held by this thread")
            self._depth -= 1
            if self._depth:
                return
            if self._waiters:
                owner, baton = self._waiters.popleft()
                self._owner, self._depth = owner, 1
                baton.release()
            else:
                self._owner = None


class ProcessLock:
    """An exclusive ``flock`` on one file, shared by the processes using one SQLite database.

    Not thread-safe by itself: callers hold the process's :class:`FairLock` around it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, blocking: bool = True) -> bool:
        """Take the lock, waiting for it unless ``blocking`` is false.

        The wait has no time limit: a holder keeps the lock for one transaction
        (milliseconds), and the kernel drops it when the holding process exits.
        """
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if not blocking:
                return False
        fcntl.flock(self._fd, fcntl.LOCK_EX)  # the kernel wakes us when it is released
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Close the file (opened again by the next :meth:`acquire`)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
