"""The conductor: worker threads that run operations, plus periodic jobs.

Started by ``flotilla serve`` (in-process) or ``flotilla conductor`` (alone).
"""

from __future__ import annotations

import logging
import os
import socket
import threading

from flotilla.db.engine import Database
from flotilla.services import services as mservices
from flotilla.settings import Settings

log = logging.getLogger(__name__)


class Conductor:
    """Owns its threads; ``stop()`` asks them to end and waits."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.host = f"{socket.gethostname()}:{os.getpid()}"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._spawn("heartbeat", self._heartbeat_loop)

    def _spawn(self, name: str, target: object) -> None:
        t = threading.Thread(target=target, name=f"flotilla-{name}", daemon=True)  # type: ignore[arg-type]
        t.start()
        self._threads.append(t)

    def _heartbeat_loop(self) -> None:
        while not self._stop.is_set():
            try:
                with self.db.session() as s:
                    mservices.heartbeat(s, host=self.host, binary="magnum-conductor")
            except Exception:
                log.exception("conductor heartbeat failed")
            self._stop.wait(self.settings.conductor.heartbeat_interval)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)
