"""``/healthcheck`` (no auth) reports the local provider's Docker Engine: 200 while it is up
or not started yet (it starts when a cluster needs it), 503 ``DEGRADED`` while it is down."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient

from flotilla.api.app import create_app
from flotilla.settings import ConductorSettings, Settings


def _get(settings: Settings) -> tuple[int, dict[str, object]]:
    app = create_app(settings)
    try:
        with TestClient(app) as client:
            r = client.get("/healthcheck")
            return r.status_code, r.json()
    finally:
        app.state.runtime.db.dispose()


def _settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(data_dir=tmp_path, conductor=ConductorSettings(enabled=False), **kw)  # type: ignore[arg-type]


def test_no_engine_yet_is_healthy(tmp_path: Path) -> None:
    status, body = _get(_settings(tmp_path))
    assert status == 200
    assert body["status"] == "OK"
    assert body["docker_engine"]["state"] == "not started"  # type: ignore[index]


def test_an_unreachable_engine_is_degraded(tmp_path: Path) -> None:
    status, body = _get(_settings(tmp_path, local={"docker_host": f"unix://{tmp_path}/no-such.sock"}))
    assert status == 503
    assert body["status"] == "DEGRADED"
    engine = body["docker_engine"]
    assert engine["state"] == "down"  # type: ignore[index]
    assert str(tmp_path) not in str(engine)  # unauthenticated: no addresses


def test_a_dead_owned_engine_is_degraded(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "dockerd.pid").write_text(f"{proc.pid}\n")
    status, body = _get(_settings(tmp_path))
    assert status == 503
    assert "not running" in body["docker_engine"]["detail"]  # type: ignore[index]


def test_without_the_local_provider_the_engine_is_not_used(tmp_path: Path) -> None:
    status, body = _get(_settings(tmp_path, enabled_providers=["fake"], default_provider="fake"))
    assert status == 200
    assert body["docker_engine"]["state"] == "not used"  # type: ignore[index]
