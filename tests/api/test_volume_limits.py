"""docker_volume_size is bounded (issue 14, item 3): a setting for every provider, and the
provider's own capacity (the local provider: free space where node volumes live),
checked when a template gives a size and when a cluster is created, with a clear 400."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from flotilla.conductor.providers import ProviderPool
from flotilla.drivers.providers.fake import FakeProvider
from flotilla.services.template_rules import VolumeLimits
from flotilla.settings import ConductorSettings, Settings

Auth = Callable[..., dict[str, str]]
HUGE = 10**7  # GB: more than any disk here, less than the setting below


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path, database_url=db_url, auth_strategy="token",
        conductor=ConductorSettings(enabled=False), max_docker_volume_size=2 * HUGE,
    )  # fmt: skip


@pytest.fixture(autouse=True)
def image(register_image: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    return register_image("flotilla-node", "debian")


def _template(api: TestClient, auth: Auth, **fields: Any) -> httpx.Response:
    body = {"coe": "docker", "image_id": "flotilla-node", "docker_storage_driver": "overlay2", **fields}
    return api.post("/v1/clustertemplates", json=body, headers=auth("p1_member"))


def _cluster(api: TestClient, auth: Auth, template: str, **fields: Any) -> httpx.Response:
    body = {"cluster_template_id": template, **fields}
    return api.post("/v1/clusters", json=body, headers=auth("p1_member", "latest"))


def _detail(r: httpx.Response) -> str:
    assert r.status_code == 400, r.text
    detail: str = r.json()["errors"][0]["detail"]
    return detail


def _free_gb(data_dir: Path) -> int:
    st = os.statvfs(data_dir)
    return st.f_bavail * st.f_frsize // 1024**3


def test_more_than_the_local_hosts_free_space_is_refused(
    api: TestClient, auth: Auth, settings: Settings
) -> None:
    free = _free_gb(settings.data_dir)
    assert free < HUGE
    detail = _detail(_template(api, auth, docker_volume_size=HUGE))
    assert f"{HUGE} GB" in detail and f"{free} GB free" in detail and "local provider" in detail, detail

    ok = _template(api, auth, docker_volume_size=1)
    assert ok.status_code == 201, ok.text
    # The cluster's own size is checked too, on create.
    detail = _detail(_cluster(api, auth, ok.json()["uuid"], docker_volume_size=HUGE))
    assert "free where node volumes are kept" in detail
    assert _cluster(api, auth, ok.json()["uuid"], docker_volume_size=1).status_code == 202


def test_the_setting_bounds_every_provider(api: TestClient, auth: Auth, app: FastAPI) -> None:
    rt = app.state.runtime
    rt.limits = dataclasses.replace(
        rt.limits, volumes=VolumeLimits(maximum_gb=50, capacity_gb=lambda _: None)
    )
    detail = _detail(_template(api, auth, docker_volume_size=51))
    assert "at most 50 GB" in detail and "max_docker_volume_size" in detail
    plain = _template(api, auth)  # no size in the template: the cluster's is checked
    assert plain.status_code == 201, plain.text
    assert "at most 50 GB" in _detail(_cluster(api, auth, plain.json()["uuid"], docker_volume_size=51))
    assert _cluster(api, auth, plain.json()["uuid"], docker_volume_size=50).status_code == 202
    # A baymodel and a bay are bounded the same way.
    r = api.post(
        "/v1/baymodels", json={"coe": "docker", "image_id": "flotilla-node", "keypair_id": "k", "docker_volume_size": 51},
        headers=auth("p1_member"),
    )  # fmt: skip
    assert "at most 50 GB" in _detail(r)


def test_provider_capacity_comes_from_the_provider(settings: Settings) -> None:
    pool = ProviderPool(settings.model_copy(update={"enabled_providers": ["local", "fake"]}))
    # Local: asked without starting an engine.
    assert pool.max_volume_gb("local") == _free_gb(settings.data_dir)
    assert pool.loaded() == {}
    fake = pool.get("fake")
    assert isinstance(fake, FakeProvider) and pool.max_volume_gb("fake") is None
    fake.volume_capacity_gb = 7
    assert pool.max_volume_gb("fake") == 7
    remote = settings.model_copy(
        update={"local": settings.local.model_copy(update={"docker_host": "tcp://h:2375"})}
    )
    assert ProviderPool(remote).max_volume_gb("local") is None
