"""A stand-in Kubernetes build cache for tests that never start nodes.

Template validation reads the built Kubernetes version from
``$FLOTILLA_KUBE_CACHE/current/VERSIONS`` (written by ``scripts/build-kube.sh``).
API-level tests point that variable at a directory made here, so they do not depend
on the Go build; tests that run real nodes use the real cache.
"""

from __future__ import annotations

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
