"""API tests: Kubernetes templates validate against a stand-in build cache (tests/kube_cache.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

import kube_cache
from flotilla.drivers.coe.kubernetes import labels


@pytest.fixture(autouse=True)
def fake_kube_build(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point ``FLOTILLA_KUBE_CACHE`` at a cache that claims ``kube_cache.FAKE_VERSION`` is built."""
    root = kube_cache.make(tmp_path_factory.mktemp("kube-cache"))
    monkeypatch.setenv(labels.CACHE_ENV, str(root))
    return root
