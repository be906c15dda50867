"""``flotilla serve --api-workers N``: N API processes on one port next to one conductor.

The parent binds the port (``server.listen``), prepares the database and runs the
conductor; each worker is a fresh (spawned, not forked) Python process that serves the
API on the inherited listening socket, so the kernel hands each new connection to
whichever worker accepts first. A worker that dies is started again (at most once a
second); SIGINT/SIGTERM stop every worker by its pid, then the parent.

Every worker keeps its own engine: on SQLite, writers take turns on a file lock next to
the database and on ``BEGIN IMMEDIATE`` (``db.writer``, ``db.engine``), so concurrent
writes from several processes wait for each other instead of failing; PostgreSQL is the
choice for many processes.

A worker that queued an operation nudges the parent through a pipe (a 4-byte message,
never blocking the worker: when the pipe is full the nudge is dropped and the conductor's
poll finds the operation), and the parent wakes its conductor at once, as a single
process does.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from flotilla.settings import Settings

log = logging.getLogger(__name__)
STOP_TIMEOUT = 20.0


def _worker_main(settings: Settings, sock: socket.socket, nudges: Connection) -> None:
    from flotilla.server import run_api_worker

    os.set_blocking(nudges.fileno(), False)
    run_api_worker(settings, sock, on_enqueue=lambda: nudge(nudges))


def nudge(conn: Connection) -> None:
    """Tell the parent an operation was queued; never blocks (a full pipe drops it)."""
    try:
        conn.send_bytes(b"")
    except (BlockingIOError, BrokenPipeError):
        pass


def _relay(nudges: Connection, wake: Callable[[], None]) -> None:
    """Parent thread: wake the conductor for every worker's nudge, until the pipe closes."""
    while True:
        try:
            nudges.recv_bytes()
        except (EOFError, OSError):
            return
        wake()


def supervise(settings: Settings, sock: socket.socket, wake: Callable[[], None] | None = None) -> None:
    """Run ``settings.api_workers`` API processes on ``sock`` until SIGINT/SIGTERM.

    ``wake``: called when a worker queued an operation (the parent's conductor).
    """
    ctx = multiprocessing.get_context("spawn")
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    inbox, outbox = ctx.Pipe(duplex=False)
    if wake is not None:
        threading.Thread(target=_relay, args=(inbox, wake), name="api-worker-nudges", daemon=True).start()

    def start() -> BaseProcess:
        proc = ctx.Process(
            target=_worker_main, args=(settings, sock, outbox), name="flotilla-api", daemon=False
        )
        proc.start()
        return proc

    procs: list[BaseProcess] = [start() for _ in range(settings.api_workers)]
    log.info("API worker processes: %s", ", ".join(str(p.pid) for p in procs))
    try:
        while not stop.wait(1.0):
            for i, proc in enumerate(procs):
                if not proc.is_alive():
                    log.error("API worker %s exited with %s; starting another", proc.pid, proc.exitcode)
                    procs[i] = start()
    finally:
        _stop_all(procs)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        outbox.close()
        inbox.close()


def _stop_all(procs: list[BaseProcess]) -> None:
    for proc in procs:
        if proc.is_alive():
            proc.terminate()  # SIGTERM: uvicorn finishes the requests in flight
    deadline = time.monotonic() + STOP_TIMEOUT
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
            proc.join(5)
