"""The conductor revives the owned Docker Engine: a SIGKILLed dockerd is started again on
the same data dir (its containers come back by their restart policies), and
``/healthcheck``'s probe says ``down`` while it is dead and ``up`` afterwards.

Uses the session's owned engine (skipped when ``FLOTILLA_E2E_DOCKER_HOST`` names a
foreign one: that cannot be restarted by us, only reconnected).
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from flotilla.conductor.providers import ProviderPool
from flotilla.drivers.base import Provider
from flotilla.drivers.providers.local import Engine, LocalProvider
from flotilla.drivers.providers.local.engine import probe
from flotilla.settings import Settings

pytestmark = pytest.mark.e2e


class OnePool(ProviderPool):
    """The conductor's pool, serving the session engine as the ``local`` provider."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        super().__init__(settings)
        self.engine = engine

    def _build(self, name: str) -> Provider:
        return LocalProvider(self.engine)


def _running(engine: Engine, name: str) -> bool:
    res = engine.run(["inspect", "--format", "{{.State.Running}}", name], check=False)
    return res.stdout.strip() == "true"


def test_a_killed_owned_engine_is_started_again(engine: Engine, workload_image: str, tmp_path: Path) -> None:
    if not engine.owned or engine.pid is None:
        pytest.skip("the session engine is not owned by Flotilla (FLOTILLA_E2E_DOCKER_HOST)")
    name = f"revive-{uuid.uuid4().hex[:8]}"
    engine.run(["run", "-d", "--name", name, "--restart", "unless-stopped", "--network", "none",
                workload_image, "sleep", "3600"])  # fmt: skip
    pool = OnePool(Settings(data_dir=tmp_path, enabled_providers=["local"]), engine)
    try:
        pool.get("local")
        assert pool.revive_engines() == []  # answering: nothing to do
        old = engine.pid
        assert probe(None, engine.data_dir)[0] == "up"
        os.kill(old, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while engine.answers(timeout=1) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not engine.answers(timeout=1)
        assert probe(None, engine.data_dir)[0] == "down"
        assert pool.revive_engines() == ["local"]
        assert engine.pid != old and engine.answers()
        assert probe(None, engine.data_dir)[0] == "up"
        deadline = time.monotonic() + 30
        while not _running(engine, name) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _running(engine, name), "the container did not come back with the engine"
    finally:
        engine.run(["rm", "-f", name], check=False)
