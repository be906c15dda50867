"""The conductor's service controller loop (``conductor/service_lbs.py``): which clusters it
syncs, the driver memory it keeps per cluster, failures that do not stop it, and the
clean-up when a delete starts during a pass.

Real database (SQLite and PostgreSQL), a cluster created on the in-memory ``fake``
provider; the COE driver is the real swarm driver with a recording
``ServiceLoadBalancing`` hook added (the Kubernetes hook itself needs an API server:
tests/unit/test_kube_service_lb.py and tests/e2e/test_kubernetes_cluster.py cover it).
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable, Iterator, MutableMapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import select, update

from flotilla.api.app import create_app
from flotilla.conductor.providers import ProviderPool
from flotilla.conductor.service import Conductor
from flotilla.conductor.service_lbs import ServiceLbController
from flotilla.db import models as m
from flotilla.db.engine import Database
from flotilla.domain import TlsMaterial
from flotilla.drivers.base import ClusterSpec, Provider, ServiceLoadBalancing
from flotilla.drivers.coe.swarm_mode import SwarmModeCoe
from flotilla.drivers.providers.fake import FakeProvider
from flotilla.drivers.registry import CoeRegistry
from flotilla.services import certificates
from flotilla.services import tokens as token_service
from flotilla.settings import ConductorSettings, Settings

T = TypeVar("T")

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*starlette.testclient.*")
    from fastapi.testclient import TestClient


class OneFakePool(ProviderPool):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.fake = FakeProvider()

    def _build(self, name: str) -> Provider:
        return self.fake


class Recording(SwarmModeCoe):
    """The swarm driver plus a service-balancing hook that records its calls."""

    def __init__(self) -> None:
        self.synced: list[tuple[str, bool]] = []
        self.deleted: list[str] = []
        self.during: Callable[[ClusterSpec], list[str]] = lambda spec: []

    def sync_service_load_balancers(
        self, spec: ClusterSpec, provider: Provider, client_tls: TlsMaterial | None,
        memo: MutableMapping[str, object],
    ) -> list[str]:  # fmt: skip
        memo["passes"] = int(memo.get("passes", 0)) + 1  # type: ignore[call-overload]
        self.synced.append((spec.uuid, client_tls is not None and "BEGIN CERTIFICATE" in client_tls.cert_pem))
        return self.during(spec)

    def delete_service_load_balancers(self, spec: ClusterSpec, provider: Provider) -> list[str]:
        self.deleted.append(spec.uuid)
        return ["x-svc-1"]


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path, database_url=db_url, auth_strategy="token", secret_key="svc-lb-secret",
        enabled_providers=["fake"], default_provider="fake",
        conductor=ConductorSettings(enabled=False, workers=1, poll_interval=0.05, health_interval=3600,
                                    sync_interval=3600, service_lb_interval=3600),
    )  # fmt: skip


@pytest.fixture
def cluster(settings: Settings) -> Iterator[tuple[str, Database, OneFakePool]]:
    """A swarm cluster (1 master, 1 worker) created on the fake provider."""
    app = create_app(settings)
    with app.state.runtime.db.session() as s:
        token = token_service.create(s, user_id="admin", project_id="admin", roles=["admin"])
    headers = {"X-Auth-Token": token, "OpenStack-API-Version": "container-infra latest"}
    with TestClient(app) as client:
        assert client.post("/local/v1/images", json={"name": "node", "os_distro": "debian"},
                           headers=headers).status_code == 201  # fmt: skip
        r = client.post("/v1/clustertemplates", json={
            "name": "t", "coe": "swarm", "image_id": "node", "external_network_id": "public",
            "docker_storage_driver": "overlay2"}, headers=headers)  # fmt: skip
        assert r.status_code == 201, r.text
        r = client.post("/v1/clusters", json={"name": "c", "cluster_template_id": "t", "node_count": 1},
                        headers=headers)  # fmt: skip
        assert r.status_code == 202, r.text
        uuid = r.json()["uuid"]
    app.state.runtime.db.dispose()
    db = Database(settings)
    pool = OneFakePool(settings)
    conductor = Conductor(settings, db, providers=pool)
    conductor.start()
    try:
        deadline = time.monotonic() + 60
        while _status(db, uuid) != "CREATE_COMPLETE":
            assert time.monotonic() < deadline, _status(db, uuid)
            time.sleep(0.05)
    finally:
        conductor.stop()
    try:
        yield uuid, db, pool
    finally:
        db.dispose()


def _status(db: Database, uuid: str) -> str:
    with db.reader() as s:
        return str(s.scalars(select(m.Cluster.status).where(m.Cluster.uuid == uuid)).one())


def _set_status(db: Database, uuid: str, status: str) -> None:
    with db.session() as s:
        s.execute(update(m.Cluster).where(m.Cluster.uuid == uuid).values(status=status))


def _pass(controller: ServiceLbController) -> int:
    started = controller.cycle()
    deadline = time.monotonic() + 10
    while controller._running:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return started


def test_running_clusters_are_synced_with_credentials_and_memory(
    settings: Settings, cluster: tuple[str, Database, OneFakePool]
) -> None:
    uuid, db, pool = cluster
    driver = Recording()
    assert isinstance(driver, ServiceLoadBalancing)
    controller = ServiceLbController(db, certificates.secret_box(settings), CoeRegistry([driver]), pool)
    try:
        assert _pass(controller) == 1 and _pass(controller) == 1
        assert driver.synced == [(uuid, True), (uuid, True)]
        assert controller._memo[uuid] == {"passes": 2}  # kept between passes
        for status in ("CREATE_IN_PROGRESS", "DELETE_IN_PROGRESS", "CREATE_FAILED"):
            _set_status(db, uuid, status)
            assert _pass(controller) == 0, status
        assert uuid not in controller._memo  # forgotten with the cluster
        _set_status(db, uuid, "UPDATE_IN_PROGRESS")  # a scale changes the members: synced
        assert _pass(controller) == 1
    finally:
        controller.close()


def test_drivers_without_the_hook_get_no_passes(
    settings: Settings, cluster: tuple[str, Database, OneFakePool]
) -> None:
    _, db, pool = cluster
    controller = ServiceLbController(
        db, certificates.secret_box(settings), CoeRegistry([SwarmModeCoe()]), pool
    )
    try:
        assert _pass(controller) == 0
    finally:
        controller.close()


def test_a_failing_pass_is_retried_and_a_delete_during_a_pass_removes_its_balancers(
    settings: Settings, cluster: tuple[str, Database, OneFakePool]
) -> None:
    uuid, db, pool = cluster
    driver = Recording()
    controller = ServiceLbController(db, certificates.secret_box(settings), CoeRegistry([driver]), pool)

    def boom(spec: ClusterSpec) -> list[str]:
        raise RuntimeError("API server not reachable")

    def delete_meanwhile(spec: ClusterSpec) -> list[str]:
        _set_status(db, spec.uuid, "DELETE_IN_PROGRESS")
        return ["ensured x-svc-1"]

    try:
        driver.during = boom
        _pass(controller)
        _pass(controller)
        assert len(driver.synced) == 2 and controller._failing[uuid] == "API server not reachable"
        driver.during = lambda spec: []
        _pass(controller)
        assert uuid not in controller._failing and driver.deleted == []
        driver.during = delete_meanwhile
        _pass(controller)
        assert driver.deleted == [uuid]
    finally:
        controller.close()


class InlinePool(ThreadPoolExecutor):
    """Runs each pass in the caller's thread: its future is done before ``cycle`` adds the
    done-callback (what a very fast pass does on a real pool now and then)."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        fut: Future[T] = Future()
        fut.set_result(fn(*args, **kwargs))
        return fut


def test_a_pass_done_at_once_does_not_deadlock_the_cycle(
    settings: Settings, cluster: tuple[str, Database, OneFakePool]
) -> None:
    uuid, db, pool = cluster
    driver = Recording()
    controller = ServiceLbController(db, certificates.secret_box(settings), CoeRegistry([driver]), pool)
    controller._pool = InlinePool(1)
    runner = threading.Thread(target=controller.cycle, daemon=True)
    runner.start()
    runner.join(10)
    assert not runner.is_alive(), "cycle() deadlocked on its own lock"  # (close() would hang too)
    controller.close()
    assert driver.synced == [(uuid, True)] and controller._running == {}
