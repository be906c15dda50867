"""Process entry points: ``serve`` (API + conductor) and ``conductor`` alone."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from typing import Any

import uvicorn

from flotilla.api.app import create_app
from flotilla.datadir import PRIVATE_UMASK, private_dir
from flotilla.db import budget
from flotilla.db.engine import Database
from flotilla.services import bootstrap
from flotilla.settings import Settings

log = logging.getLogger(__name__)


def _logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    # httpx logs every request at INFO; the conductor talks to cluster daemons many times a
    # minute (health checks, joins), which would bury the operation log.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))


def listen(settings: Settings) -> socket.socket:
    """The listening socket for ``settings.bind``. Raises OSError (port taken, bad address)."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((settings.host.strip("[]"), settings.port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _private(settings: Settings) -> None:
    """Files this process creates are private (database, keys, volume images); the data
    dir is 0700. The owned dockerd gets its usual 022 back (see the local provider)."""
    os.umask(PRIVATE_UMASK)
    private_dir(settings.data_dir)


def run_server(settings: Settings) -> int:
    """Serve until SIGINT/SIGTERM. Returns the exit code (1 when the port cannot be bound).

    The port is bound before the conductor starts, so a server that cannot listen never
    registers itself in ``/v1/mservices`` nor claims operations.
    """
    _logging(settings)
    try:
        plan = budget.serve(settings)
    except budget.BudgetError as exc:
        log.error("%s", exc)
        return 2
    try:
        sock = listen(settings)
    except OSError as exc:
        log.error(
            "cannot listen on %s: %s (is another server using it? choose one with --bind)", settings.bind, exc
        )
        return 1
    _private(settings)
    db = Database(settings, plan.main)
    if not _fits_server(db, plan):
        sock.close()
        return 2
    bootstrap.prepare_database(db)
    path = bootstrap.ensure_admin_credentials(settings, db)
    workers = settings.api_workers
    app = create_app(settings, db) if workers == 1 else None
    conductor = None
    if settings.conductor.enabled:
        from flotilla.conductor.service import Conductor

        conductor = Conductor(settings, db)
        conductor.start()
        if app is not None:
            app.state.runtime.on_enqueue.append(conductor.wake)
    log.info(
        "Flotilla API on %s (database %s, auth %s%s)%s",
        settings.endpoint, settings.db_url.split("@")[-1], settings.auth_strategy,
        f", {workers} API processes" if workers > 1 else "", f"; credentials in {path}" if path else "",
    )  # fmt: skip
    try:
        if app is not None:
            _uvicorn(app, settings, sock)
        else:
            from flotilla.server_workers import supervise

            supervise(settings, sock, wake=conductor.wake if conductor is not None else None)
    finally:
        sock.close()
        if conductor is not None:
            conductor.stop()
        db.dispose()
    return 0


def _fits_server(db: Database, plan: budget.CommandPlan) -> bool:
    """On PostgreSQL, whether ``plan``'s connections fit in what the server allows (else
    logs why, and disposes of ``db``). A server that cannot be asked is left to the next
    statement (the migration), which says why it failed."""
    if db.is_sqlite:
        return True
    try:
        limits = budget.server_limits(db.engine)
    except Exception:
        return True
    try:
        budget.check_server(plan, *limits)
    except budget.BudgetError as exc:
        log.error("%s", exc)
        db.dispose()
        return False
    if plan.workers:
        log.info(
            "PostgreSQL connections: at most %d (database_connections=%d): the conductor's process %d, "
            "each of %d API processes %d", plan.connections, plan.budget, plan.main.connections, plan.workers,
            plan.worker.connections if plan.worker else 0,
        )  # fmt: skip
    else:
        log.info(
            "PostgreSQL connections: at most %d (database_connections=%d)", plan.connections, plan.budget
        )
    return True


def _uvicorn(app: Any, settings: Settings, sock: socket.socket) -> None:
    """Serve ``app`` on the bound ``sock`` until SIGINT/SIGTERM."""
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level="warning", access_log=False
    )
    uvicorn.Server(config).run(sockets=[sock])


def run_api_worker(
    settings: Settings, sock: socket.socket, on_enqueue: Callable[[], None] | None = None
) -> None:
    """One of ``--api-workers`` processes: the API only (the parent runs the conductor),
    on the listening socket the parent bound and shares with its siblings. ``on_enqueue``
    tells the parent's conductor that an operation was queued."""
    _logging(settings)
    _private(settings)
    app = create_app(settings, plan=budget.serve(settings).worker)
    if on_enqueue is not None:
        app.state.runtime.on_enqueue.append(on_enqueue)
    _uvicorn(app, settings, sock)


def run_conductor(settings: Settings) -> int:
    _logging(settings)
    _private(settings)
    from flotilla.conductor.service import Conductor

    try:
        plan = budget.conductor(settings)
    except budget.BudgetError as exc:
        log.error("%s", exc)
        return 2
    db = Database(settings, plan.main)
    if not _fits_server(db, plan):
        return 2
    bootstrap.prepare_database(db)
    conductor = Conductor(settings, db)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    conductor.start()
    log.info("conductor running (database %s)", settings.db_url.split("@")[-1])
    stop.wait()
    conductor.stop()
    db.dispose()
    return 0
