"""Failed scales can be retried and converge; node addresses and load balancers come
from the provider.

The conductor runs in-process on the fake provider (fault injection through
``FakeProvider.fail_on``); requests go through the ASGI app.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from flotilla.conductor.providers import ProviderPool
from flotilla.conductor.service import Conductor
from flotilla.db import models as m
from flotilla.drivers.providers.fake import FakeProvider
from flotilla.settings import ConductorSettings, Settings

Auth = Callable[..., dict[str, str]]


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path, database_url=db_url, auth_strategy="token", enabled_providers=["fake"],
        default_provider="fake", conductor=ConductorSettings(enabled=False, poll_interval=0.05, lease_seconds=5),
    )  # fmt: skip


@pytest.fixture
def h(auth: Auth, register_image: Callable[..., Any]) -> dict[str, str]:
    register_image("flotilla-node", "debian")
    return auth("p1_member", "latest")


@pytest.fixture
def provider(app: FastAPI, settings: Settings) -> Iterator[FakeProvider]:
    """The fake provider of a started in-process conductor."""
    fake = FakeProvider()
    pool = ProviderPool(settings)
    pool._providers["fake"] = fake
    conductor = Conductor(settings, app.state.runtime.db, providers=pool)
    app.state.runtime.on_enqueue.append(conductor.wake)
    conductor.start()
    yield fake
    conductor.stop()


def cluster(api: TestClient, h: dict[str, str], uuid: str) -> dict[str, Any]:
    r = api.get(f"/v1/clusters/{uuid}", headers=h)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def settle(api: TestClient, h: dict[str, str], uuid: str, timeout: float = 30.0) -> dict[str, Any]:
    """Wait until the cluster's operation ended; return the cluster."""
    deadline = time.monotonic() + timeout
    while True:
        c = cluster(api, h, uuid)
        if not c["status"].endswith("IN_PROGRESS"):
            return c
        assert time.monotonic() < deadline, f"cluster still {c['status']}: {c['status_reason']}"
        time.sleep(0.05)


def create(api: TestClient, h: dict[str, str], name: str, node_count: int = 1) -> str:
    r = api.post(
        "/v1/clustertemplates",
        json={"coe": "swarm", "image_id": "flotilla-node", "name": f"{name}-t"},
        headers=h,
    )
    assert r.status_code == 201, r.text
    r = api.post("/v1/clusters", json={"cluster_template_id": r.json()["uuid"], "name": name, "node_count": node_count}, headers=h)  # fmt: skip
    assert r.status_code == 202, r.text
    uuid: str = r.json()["uuid"]
    return uuid


def resize(api: TestClient, h: dict[str, str], uuid: str, count: int) -> int:
    r = api.post(f"/v1/clusters/{uuid}/actions/resize", json={"node_count": count}, headers=h)
    assert r.status_code in (202, 400, 409), r.text
    return r.status_code


def workers(provider: FakeProvider, uuid: str) -> list[str]:
    return sorted(n.name for n in provider.list_nodes(uuid) if n.role == "worker")


def test_failed_scale_out_retried_converges(
    api: TestClient, h: dict[str, str], provider: FakeProvider
) -> None:
    uuid = create(api, h, "grow")
    assert settle(api, h, uuid)["status"] == "CREATE_COMPLETE"
    new = f"grow-{uuid[:8]}-node-1"
    provider.fail_on[f"exec:{new}"] = "daemon did not answer"  # the node starts, then its step fails
    assert resize(api, h, uuid, 2) == 202
    failed = settle(api, h, uuid)
    assert failed["status"] == "UPDATE_FAILED" and failed["node_count"] == 1
    assert new in workers(provider, uuid)  # a half-made node is left behind

    provider.fail_on.clear()
    assert resize(api, h, uuid, 2) == 202
    done = settle(api, h, uuid)
    assert done["status"] == "UPDATE_COMPLETE" and done["node_count"] == 2
    assert workers(provider, uuid) == [f"grow-{uuid[:8]}-node-0", new]
    assert len(done["node_addresses"]) == 2
    # the swarm (as the fake nodes' daemons see it) has the node the failed attempt left unjoined
    assert sorted(provider.docker.swarms[uuid].members) == [
        f"grow-{uuid[:8]}-master-0",
        f"grow-{uuid[:8]}-node-0",
        new,
    ]


def test_failed_scale_out_then_resize_back_removes_the_half_made_node(
    api: TestClient, h: dict[str, str], provider: FakeProvider
) -> None:
    uuid = create(api, h, "back")
    assert settle(api, h, uuid)["status"] == "CREATE_COMPLETE"
    provider.fail_on[f"exec:back-{uuid[:8]}-node-1"] = "daemon did not answer"
    assert resize(api, h, uuid, 2) == 202
    assert settle(api, h, uuid)["status"] == "UPDATE_FAILED"
    provider.fail_on.clear()
    assert resize(api, h, uuid, 1) == 202  # same count as recorded, but the cluster is not there: reconcile
    done = settle(api, h, uuid)
    assert done["status"] == "UPDATE_COMPLETE" and done["node_count"] == 1
    assert workers(provider, uuid) == [f"back-{uuid[:8]}-node-0"]


def test_failed_scale_in_retried_converges(
    api: TestClient, h: dict[str, str], provider: FakeProvider
) -> None:
    uuid = create(api, h, "shrink", node_count=2)
    assert settle(api, h, uuid)["status"] == "CREATE_COMPLETE"
    gone = f"shrink-{uuid[:8]}-node-1"
    provider.fail_on[f"delete_node:{gone}"] = "engine busy"
    assert resize(api, h, uuid, 1) == 202
    failed = settle(api, h, uuid)
    assert failed["status"] == "UPDATE_FAILED" and failed["node_count"] == 2
    provider.fail_on.clear()
    assert resize(api, h, uuid, 1) == 202
    done = settle(api, h, uuid)
    assert done["status"] == "UPDATE_COMPLETE" and done["node_count"] == 1
    assert workers(provider, uuid) == [f"shrink-{uuid[:8]}-node-0"]
    assert len(done["node_addresses"]) == 1
    assert sorted(provider.docker.swarms[uuid].members) == [
        f"shrink-{uuid[:8]}-master-0",
        f"shrink-{uuid[:8]}-node-0",
    ]


def test_scale_in_interrupted_before_the_swarm_forgot_the_node_converges(
    api: TestClient, h: dict[str, str], provider: FakeProvider
) -> None:
    """The node is deleted but the step fails before ``docker node rm``: the retry finds
    nothing to delete at the provider and still removes the member from the swarm."""
    uuid = create(api, h, "forget", node_count=2)
    assert settle(api, h, uuid)["status"] == "CREATE_COMPLETE"
    master, gone = f"forget-{uuid[:8]}-master-0", f"forget-{uuid[:8]}-node-1"
    real_delete = provider.delete_node

    def delete_then_lose_the_manager(cluster_uuid: str, name: str) -> None:
        real_delete(cluster_uuid, name)
        provider.fail_on[f"exec:{master}"] = "manager unreachable"  # so the `docker node rm` fails

    provider.delete_node = delete_then_lose_the_manager  # type: ignore[method-assign]
    assert resize(api, h, uuid, 1) == 202
    assert settle(api, h, uuid)["status"] == "UPDATE_FAILED"
    assert gone not in workers(provider, uuid) and gone in provider.docker.swarms[uuid].members
    provider.delete_node = real_delete  # type: ignore[method-assign]
    provider.fail_on.clear()
    assert resize(api, h, uuid, 1) == 202
    done = settle(api, h, uuid)
    assert done["status"] == "UPDATE_COMPLETE" and done["node_count"] == 1
    assert sorted(provider.docker.swarms[uuid].members) == [master, f"forget-{uuid[:8]}-node-0"]


def test_addresses_come_from_the_provider_whatever_the_node_names(
    app: FastAPI, api: TestClient, h: dict[str, str], settings: Settings
) -> None:
    """Names whose index used to decide the address (master 90 = worker 0, worker 155 = no
    room in the /24) get distinct addresses of the cluster network."""
    uuid = create(api, h, "odd", node_count=2)
    prefix = f"odd-{uuid[:8]}"
    with app.state.runtime.db.session() as s:
        for ng in s.scalars(select(m.NodeGroup).where(m.NodeGroup.cluster_id == uuid)):
            ng.node_names = (
                [f"{prefix}-master-90"] if ng.role == "master" else [f"{prefix}-node-0", f"{prefix}-node-155"]
            )
    fake = FakeProvider()
    pool = ProviderPool(settings)
    pool._providers["fake"] = fake
    conductor = Conductor(settings, app.state.runtime.db, providers=pool)
    conductor.start()
    try:
        c = settle(api, h, uuid)
    finally:
        conductor.stop()
    assert c["status"] == "CREATE_COMPLETE", c["status_reason"]
    addresses = [n.address for n in fake.list_nodes(uuid)]
    assert None not in addresses and len(set(addresses)) == 3
    assert sorted(c["master_addresses"] + c["node_addresses"]) == sorted(a for a in addresses if a)
    assert c["master_addresses"][0].endswith(".10")  # addresses are handed out masters first


def test_swarm_managers_sit_behind_the_providers_load_balancer(
    api: TestClient, h: dict[str, str], provider: FakeProvider
) -> None:
    r = api.post("/v1/clustertemplates", json={"coe": "swarm", "image_id": "flotilla-node", "name": "ha-t", "master_lb_enabled": True}, headers=h)  # fmt: skip
    assert r.status_code == 201, r.text
    body = {"cluster_template_id": r.json()["uuid"], "name": "ha", "master_count": 3, "node_count": 1}
    r = api.post("/v1/clusters", json=body, headers=h)
    assert r.status_code == 202, r.text
    uuid = r.json()["uuid"]
    c = settle(api, h, uuid)
    assert c["status"] == "CREATE_COMPLETE", c["status_reason"]
    (lb,) = provider.load_balancers.values()
    first, last = lb["applied"][0], lb["applied"][-1]
    assert first.listeners[0].members == ()  # created first: the managers' certificates name it
    assert (
        sorted(last.listeners[0].members) == sorted(c["master_addresses"]) and len(c["master_addresses"]) == 3
    )
    assert c["api_address"] == f"tcp://{lb['address']}:2376"
    r = api.delete(f"/v1/clusters/{uuid}", headers=h)
    assert r.status_code == 204
    deadline = time.monotonic() + 30
    while api.get(f"/v1/clusters/{uuid}", headers=h).status_code != 404:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert provider.leaks(uuid) == []


def test_nodes_are_described_by_the_bootstrap_spec_with_their_flavor(
    api: TestClient, h: dict[str, str], provider: FakeProvider
) -> None:
    """The provider gets the nodegroup's flavor by name with its resources (a cloud
    provider boots that flavor; the local one labels the container and sets limits)."""
    uuid = create(api, h, "flavor", node_count=1)
    assert settle(api, h, uuid)["status"] == "CREATE_COMPLETE"
    specs = [node["spec"] for node in provider.nodes.values() if node["spec"].cluster_uuid == uuid]
    assert sorted(s.role for s in specs) == ["master", "worker"]
    for spec in specs:
        assert spec.flavor == "m1.small", spec
        assert (spec.cpus, spec.memory_mb) == (1.0, 1024), spec
        assert spec.command and spec.volume_path == "/var/lib/docker"
