"""A stand-in Kubernetes build cache for tests that never start nodes.

Template validation reads the built Kubernetes version from
``$FLOTILLA_KUBE_CACHE/current/VERSIONS`` (written by ``scripts/build-kube.sh``).
API-level tests point that variable at a directory made here, so they do not depend
on the Go build; tests that run real nodes use the real cache.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from flotilla.drivers.coe.kubernetes import labels

#: The version the stand-in cache claims (any 1.37 patch would do).
FAKE_VERSION = "v1.37.2"


def make(root: Path, version: str = FAKE_VERSION) -> Path:
    """A cache root whose ``current/VERSIONS`` names ``version``; returns the root."""
    current = root / "current"
    current.mkdir(parents=True, exist_ok=True)
    (current / "VERSIONS").write_text(f"kubernetes={version}\netcd=v3.6.0\ncontainerd=v2.3.4\n")
    return root


def env_for_server(root: Path) -> dict[str, str]:
    """``FLOTILLA_KUBE_CACHE`` for a fake-provider server: the real cache when it is built
    (so a test can also run real nodes with it), else a stand-in made under ``root``."""
    if labels.built_kube_version() is not None:
        return {labels.CACHE_ENV: str(labels.cache_dir())}
    return {labels.CACHE_ENV: str(make(root))}


def version_of(env: dict[str, str]) -> str:
    """The version a server started with ``env`` (from :func:`env_for_server`) accepts."""
    version = labels.built_kube_version(Path(env[labels.CACHE_ENV]))
    assert version is not None, env
    return version


#: Set by scripts/test.sh when it runs ``scripts/build-kube.sh`` next to the tests: the file
#: the background build writes its exit status to when it ends (absent while it runs).
BUILD_RC_ENV = "FLOTILLA_KUBE_BUILD_RC"
#: The background build's log (its tail is shown when the build failed).
BUILD_LOG_ENV = "FLOTILLA_KUBE_BUILD_LOG"
#: How long a test that needs the real build waits for it (a cold build is ~40 min on 2 cores).
BUILD_WAIT_S = 75 * 60

_waited: str | None = None


def wait_for_build() -> str | None:
    """Block until the background Kubernetes build (if scripts/test.sh started one) ends.

    Returns None when the build is there, else why not (the failed build's log tail). Without
    a background build (a plain pytest run), returns at once: the tests check the cache."""
    global _waited
    rc_path = os.environ.get(BUILD_RC_ENV)
    if not rc_path:
        return None
    if _waited is not None:
        return _waited or None
    rc_file = Path(rc_path)
    deadline = time.monotonic() + BUILD_WAIT_S
    if not rc_file.exists():
        sys.stderr.write("\n[kube] waiting for the background Kubernetes build (scripts/build-kube.sh)\n")
    while not rc_file.exists():
        if time.monotonic() > deadline:
            _waited = f"the Kubernetes build did not end within {BUILD_WAIT_S // 60} min"
            return _waited
        time.sleep(5)
    rc = rc_file.read_text().strip()
    if rc == "0":
        _waited = ""
        return None
    log = Path(os.environ.get(BUILD_LOG_ENV, "/nonexistent"))
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:]) if log.exists() else "(no log)"
    _waited = f"scripts/build-kube.sh failed (exit {rc}):\n{tail}"
    return _waited


def require_real_build() -> labels.KubeBuild:
    """The real Kubernetes build; fails (never skips) a test that runs real Kubernetes nodes
    when it is missing."""
    from flotilla.drivers.coe.kubernetes import artifacts

    build = labels.read_build()
    if build.version is None or not build.has_binaries:
        import pytest

        pytest.fail(f"no Kubernetes build in {build.directory}: {artifacts.BUILD_HINT}")
    return build
