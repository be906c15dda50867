"""The conductor: worker threads that run operations, plus periodic jobs.

Started by ``flotilla serve`` (in-process) or ``flotilla conductor`` (alone). Any
number of conductors may share one PostgreSQL database: operations are claimed with
leases, so each runs on exactly one worker at a time.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from flotilla.conductor.health import HealthMonitor, HealthPolicy
from flotilla.conductor.images import ImageSync
from flotilla.conductor.providers import ProviderPool
from flotilla.conductor.runner import OpRunner
from flotilla.conductor.service_lbs import ServiceLbController
from flotilla.db.engine import Database
from flotilla.drivers.registry import CoeRegistry
from flotilla.notify.config import build_sinks
from flotilla.notify.dispatcher import deliver_pending, purge_delivered
from flotilla.notify.sinks import close_sinks
from flotilla.services import certificates, operations
from flotilla.services import services as mservices
from flotilla.settings import Settings

log = logging.getLogger(__name__)


class Conductor:
    """Owns its threads; ``stop()`` asks them to end and waits."""

    def __init__(self, settings: Settings, db: Database, *, providers: ProviderPool | None = None) -> None:
        self.settings = settings
        self.db = db
        self.hostname = socket.gethostname()
        #: The lease-holder prefix of this process (``HOST:PID``): a restarted server on the
        #: same host recognises its dead predecessor's leases by it and reclaims them.
        self.host = operations.holder(self.hostname, os.getpid())
        #: The mservices identity, (host, binary) as in Magnum: a restart reuses its row.
        self.service_host = settings.conductor.host or self.hostname
        self.coes = CoeRegistry.from_names(settings.enabled_coe_drivers)
        self.providers = providers or ProviderPool(settings)
        self.box = certificates.secret_box(settings)
        self.sinks = build_sinks(settings.notifications, settings.data_dir)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._images_wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._runners: set[OpRunner] = set()
        self._runners_lock = threading.Lock()

    def start(self) -> None:
        """Check the default provider against the enabled COE drivers, then start the threads.

        Raises ``Unavailable`` (nothing started) when the pair cannot work.
        """
        self.providers.check_default(self.coes)
        cfg = self.settings.conductor
        self.reclaim_dead_leases()
        for i in range(cfg.workers):
            self._spawn(f"worker-{i}", lambda i=i: self._worker_loop(i))  # type: ignore[misc]
        self._spawn("heartbeat", self._heartbeat_loop)
        self._spawn("reaper", self._reaper_loop)
        self._spawn("health", self._health_loop)
        self._spawn("notify", self._notify_loop)
        self._spawn("images", self._image_loop)
        self._spawn("service-lbs", self._service_lb_loop)

    def wake(self) -> None:
        """Look for work now (called by the in-process API after it queues an operation or
        records an image to load)."""
        self._wake.set()
        self._images_wake.set()

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        t = threading.Thread(target=target, name=f"flotilla-{name}", daemon=True)
        t.start()
        self._threads.append(t)

    def _worker_loop(self, index: int) -> None:
        cfg = self.settings.conductor
        owner = f"{self.host}/w{index}"
        while not self._stop.is_set():
            op = None
            try:
                # A read first: taking the writer's turn (SQLite) for a claim that finds
                # nothing would make the API's writes wait behind an idle poll.
                with self.db.reader() as r:
                    found = operations.claimable(r)
                if found:
                    with self.db.session() as s:
                        op = operations.claim(s, owner, cfg.lease_seconds, skip_locked=not self.db.is_sqlite)
            except Exception:
                log.exception("claiming an operation failed")
            if op is None:
                self._wake.wait(cfg.poll_interval)
                self._wake.clear()
                continue
            runner = OpRunner(self.db, self.box, self.coes, self.providers, owner, cfg.lease_seconds,
                              images=ImageSync(self.settings.data_dir, self.db, self.coes, self.providers))  # fmt: skip
            with self._runners_lock:
                self._runners.add(runner)
            try:
                runner.run(op)
            except Exception:
                log.exception("operation %s crashed its worker", op.uuid)
            finally:
                with self._runners_lock:
                    self._runners.discard(runner)

    def reclaim_dead_leases(self) -> None:
        """Free the leases held by dead processes of this host (a crashed predecessor)."""
        try:
            with self.db.session() as s:
                operations.reclaim_dead(s, self.hostname, _pid_alive)
        except Exception:
            log.exception("reclaiming the leases of dead processes failed")

    def _heartbeat_loop(self) -> None:
        while not self._stop.is_set():
            try:
                with self.db.session() as s:
                    mservices.heartbeat(s, host=self.service_host, binary="magnum-conductor")
            except Exception:
                log.exception("conductor heartbeat failed")
            self._stop.wait(self.settings.conductor.heartbeat_interval)

    def _reaper_loop(self) -> None:
        """Fail operations past their deadline whose worker is gone (always terminal)."""
        cfg = self.settings.conductor
        while not self._stop.wait(cfg.sync_interval):
            self.reclaim_dead_leases()
            try:
                with self.db.session() as s:
                    for op in operations.expired(s):
                        operations.reap(s, op, f"{self.host}/reaper", cfg.lease_seconds)
            except Exception:
                log.exception("reaper failed")

    def _health_loop(self) -> None:
        cfg = self.settings.conductor
        monitor = HealthMonitor(
            self.db, self.box, self.coes, self.providers,
            HealthPolicy(grace_seconds=cfg.health_grace, max_unhealthy_share=cfg.max_unhealthy_share),
        )  # fmt: skip
        while not self._stop.wait(cfg.health_interval):
            try:
                for name in self.providers.revive_engines():
                    log.warning("provider %s: its Docker Engine had stopped; it answers again", name)
            except Exception as exc:
                log.error("the Docker Engine stopped answering and could not be revived: %s", exc)
            try:
                if monitor.cycle():
                    self.wake()
            except Exception:
                log.exception("health cycle failed")

    def _image_loop(self) -> None:
        """Import recorded images into nodes lacking them (``cluster-image-load``, new nodes)."""
        sync = ImageSync(self.settings.data_dir, self.db, self.coes, self.providers)
        interval = min(self.settings.conductor.sync_interval, 2.0)
        while not self._stop.is_set():
            try:
                sync.cycle()
            except Exception:
                log.exception("image sync failed")
            self._images_wake.wait(interval)
            self._images_wake.clear()

    def _service_lb_loop(self) -> None:
        """Provider load balancers for the clusters' LoadBalancer Services (``service_lbs.py``)."""
        controller = ServiceLbController(self.db, self.box, self.coes, self.providers)
        try:
            while not self._stop.wait(self.settings.conductor.service_lb_interval):
                try:
                    controller.cycle()
                except Exception:
                    log.exception("service load balancer cycle failed")
        finally:
            controller.close()

    def _notify_loop(self) -> None:
        """Deliver CADF notifications from the outbox (at least once, with backoff)."""
        cfg = self.settings.notifications
        last_purge = 0.0
        while not self._stop.is_set():
            sent = 0
            try:
                sent = deliver_pending(self.db, self.sinks, max_attempts=cfg.max_attempts)
                if time.monotonic() - last_purge > 3600:
                    purge_delivered(self.db, timedelta(hours=cfg.keep_delivered_hours))
                    last_purge = time.monotonic()
            except Exception:
                log.exception("delivering notifications failed")
            if not sent:
                self._stop.wait(cfg.poll_interval)

    def stop(self, grace: float = 3.0) -> None:
        """Stop the threads and release our leases (SIGTERM ends here via ``serve``).

        Running operations are told to stop at their next step boundary; after ``grace``
        seconds every lease of this process is released even if a step is still busy, so
        the next conductor resumes the operation at once (steps are idempotent).
        """
        self._stop.set()
        self._wake.set()
        self._images_wake.set()
        with self._runners_lock:
            for runner in self._runners:
                runner.abandon()
        deadline = time.monotonic() + grace
        for t in self._threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        try:
            with self.db.session() as s:
                released = operations.release_all(s, self.host)
            if released:
                log.info("released %d operation lease(s) on the way out", released)
        except Exception:
            log.exception("releasing the leases of this process failed")
        close_sinks(self.sinks)


def _pid_alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists on this host (the lease holder's liveness)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
