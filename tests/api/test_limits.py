"""Operator limits come from Settings, built once (``Limits.from_settings``), and every
entry point (API create, PATCH, resize, the dashboard's scale form) enforces them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from flotilla.services.clusters import Limits
from flotilla.settings import ConductorSettings, Settings

Auth = Callable[..., dict[str, str]]


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path, database_url=db_url, auth_strategy="token", max_nodes_per_cluster=3,
        max_clusters_per_project=7, max_limit=50, conductor=ConductorSettings(enabled=False),
    )  # fmt: skip


def test_limits_are_built_from_settings(settings: Settings) -> None:
    limits = Limits.from_settings(settings)
    assert (limits.max_clusters_per_project, limits.max_limit, limits.max_nodes_per_cluster) == (7, 50, 3)
    assert limits.labels.max_labels == settings.max_labels
    assert limits.volumes.maximum_gb == settings.max_docker_volume_size


def _template(api: TestClient, h: dict[str, str]) -> str:
    r = api.post(
        "/v1/clustertemplates", json={"coe": "swarm", "image_id": "flotilla-node", "name": "t"}, headers=h
    )
    assert r.status_code == 201, r.text
    uuid: str = r.json()["uuid"]
    return uuid


def test_max_nodes_per_cluster_is_enforced(
    api: TestClient, auth: Auth, register_image: Callable[..., Any]
) -> None:
    register_image("flotilla-node", "debian")
    h = auth("p1_member", "latest")
    template = _template(api, h)
    r = api.post(
        "/v1/clusters", json={"cluster_template_id": template, "name": "big", "node_count": 10}, headers=h
    )
    assert r.status_code == 400 and "at most 3 nodes" in r.text, r.text
    r = api.post(
        "/v1/clusters", json={"cluster_template_id": template, "name": "ok", "node_count": 2}, headers=h
    )
    assert r.status_code == 202, r.text
    uuid = r.json()["uuid"]
    r = api.post(f"/v1/clusters/{uuid}/actions/resize", json={"node_count": 10}, headers=h)
    assert r.status_code == 400 and "at most 3 nodes" in r.text, r.text
    patch = [{"op": "replace", "path": "/node_count", "value": 3}]
    r = api.patch(f"/v1/clusters/{uuid}", json=patch, headers=h)
    assert r.status_code == 400 and "at most 3 nodes" in r.text, r.text
