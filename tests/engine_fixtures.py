"""Session fixtures for tests against a real Docker Engine, shared by every test directory
(loaded from tests/conftest.py), so a whole test session runs ONE dockerd.

One dedicated dockerd per session under a temporary DATA_DIR (or the engine named by
``FLOTILLA_E2E_DOCKER_HOST``), stopped by its pid at the end. Tests are skipped when the
engine cannot be started here (not root, docker.io missing, a foreign docker0, ...).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from flotilla.drivers.providers.local import Engine, LocalProvider, leaks
from flotilla.drivers.providers.local.images import build_hostroot_image, build_workload_image
from flotilla.errors import Unavailable

log = logging.getLogger(__name__)

HOSTROOT_TAG = "flotilla-node:hostroot"


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    data_dir = tmp_path_factory.mktemp("flotilla-e2e")
    started = time.monotonic()
    try:
        eng = Engine.connect(os.environ.get("FLOTILLA_E2E_DOCKER_HOST") or None, data_dir)
    except Unavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"no Docker Engine for e2e tests under CI: {exc}")
        pytest.skip(f"no Docker Engine for e2e tests: {exc}")
    log.info("engine ready in %.2f s: %r", time.monotonic() - started, eng)
    try:
        yield eng
    finally:
        remaining = leaks(eng)
        if remaining:
            # Reported, then swept: a leak must not outlive the session (bridges, loop devices).
            log.warning("the test session left %s", remaining)
            _sweep_all(eng)
        eng.stop()
        if eng.owned and not remaining:
            shutil.rmtree(data_dir, ignore_errors=True)


def _sweep_all(eng: Engine) -> None:
    flt = json.dumps({"label": ["flotilla.cluster"]})
    rows = [
        *(eng.api.get("/containers/json", all=1, filters=flt) or []),
        *((eng.api.get("/volumes", filters=flt) or {}).get("Volumes") or []),
        *(eng.api.get("/networks", filters=flt) or []),
    ]
    clusters = {str((r.get("Labels") or {}).get("flotilla.cluster")) for r in rows} - {"None"}
    vol_root = eng.data_dir / "volumes"
    if vol_root.is_dir():
        clusters |= {p.name for p in vol_root.iterdir() if p.is_dir()}
    provider = LocalProvider(eng)
    try:
        for cid in sorted(clusters):
            try:
                provider.sweep(cid)
            except Exception as exc:  # keep sweeping the others
                log.warning("sweeping cluster %s failed: %s", cid, exc)
    finally:
        provider.close()


@pytest.fixture(scope="session")
def provider(engine: Engine) -> Iterator[LocalProvider]:
    p = LocalProvider(engine)
    try:
        yield p
    finally:
        p.close()


@pytest.fixture(scope="session")
def hostroot_image(engine: Engine) -> str:
    return build_hostroot_image(engine, HOSTROOT_TAG)


@pytest.fixture(scope="session")
def workload_image(engine: Engine) -> str:
    return build_workload_image(engine)


@pytest.fixture
def cluster_uuid(provider: LocalProvider) -> Iterator[str]:
    """A fresh cluster uuid; whatever the test leaves behind is swept (and reported)."""
    cid = uuid.uuid4().hex[:12]
    yield cid
    left = provider.sweep(cid)
    if left:
        log.warning("cluster %s: test left %s", cid, left)


@pytest.fixture
def data_dir(engine: Engine) -> Path:
    return engine.data_dir
