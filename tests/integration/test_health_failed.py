"""A cluster left FAILED (CREATE_FAILED / UPDATE_FAILED) keeps its health checked: its
nodes still run (some of them), so ``health_status`` says what is left. It is never
auto-healed (the user decides: update again, or delete).

The health monitor runs in this process with the in-memory ``fake`` provider; the
database is real (SQLite and PostgreSQL).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update

from flotilla.api.app import create_app
from flotilla.conductor.health import HealthMonitor, HealthPolicy
from flotilla.conductor.providers import ProviderPool
from flotilla.conductor.service import Conductor
from flotilla.db import models as m
from flotilla.db.engine import Database
from flotilla.drivers.base import Provider
from flotilla.drivers.providers.fake import FakeProvider
from flotilla.drivers.registry import CoeRegistry
from flotilla.services import certificates, operations
from flotilla.services import tokens as token_service
from flotilla.settings import ConductorSettings, Settings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*starlette.testclient.*")
    from fastapi.testclient import TestClient


class OneFakePool(ProviderPool):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.fake = FakeProvider()

    def _build(self, name: str) -> Provider:
        return self.fake


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path, database_url=db_url, auth_strategy="token", secret_key="health-failed-secret",
        enabled_providers=["fake"], default_provider="fake",
        conductor=ConductorSettings(enabled=False, workers=1, poll_interval=0.05, health_interval=3600,
                                    sync_interval=3600),
    )  # fmt: skip


@pytest.fixture
def cluster(settings: Settings) -> Iterator[tuple[str, Database, OneFakePool]]:
    """A swarm cluster (1 master, 2 workers, auto-healing on) created on the fake provider."""
    app = create_app(settings)
    with app.state.runtime.db.session() as s:
        token = token_service.create(s, user_id="admin", project_id="admin", roles=["admin"])
    headers = {"X-Auth-Token": token, "OpenStack-API-Version": "container-infra latest"}
    with TestClient(app) as client:
        assert client.post("/local/v1/images", json={"name": "node", "os_distro": "debian"},
                           headers=headers).status_code == 201  # fmt: skip
        r = client.post("/v1/clustertemplates", json={
            "name": "t", "coe": "swarm", "image_id": "node", "external_network_id": "public",
            "docker_storage_driver": "overlay2", "labels": {"auto_healing_enabled": "true"}}, headers=headers)  # fmt: skip
        assert r.status_code == 201, r.text
        r = client.post("/v1/clusters", json={"name": "c", "cluster_template_id": "t", "node_count": 2},
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
        while _row(db, uuid).status != "CREATE_COMPLETE":
            assert time.monotonic() < deadline, _row(db, uuid).status_reason
            time.sleep(0.05)
    finally:
        conductor.stop()
    try:
        yield uuid, db, pool
    finally:
        db.dispose()


def _row(db: Database, uuid: str) -> m.Cluster:
    with db.reader() as s:
        return s.scalars(select(m.Cluster).where(m.Cluster.uuid == uuid)).one()


@pytest.mark.parametrize("failed", ["CREATE_FAILED", "UPDATE_FAILED"])
def test_a_failed_cluster_still_gets_its_health_checked(
    settings: Settings, cluster: tuple[str, Database, OneFakePool], failed: str
) -> None:
    uuid, db, pool = cluster
    monitor = HealthMonitor(
        db, certificates.secret_box(settings), CoeRegistry.from_names(settings.enabled_coe_drivers), pool,
        HealthPolicy(grace_seconds=0),
    )  # fmt: skip
    monitor.cycle()
    assert _row(db, uuid).health_status == "HEALTHY"
    with db.session() as s:
        s.execute(update(m.Cluster).where(m.Cluster.uuid == uuid).values(status=failed, status_reason="boom"))
    victim = next(name for name in pool.fake.nodes if name.endswith("-node-1"))
    pool.fake.stop_node(victim)
    monitor.cycle()
    row = _row(db, uuid)
    assert row.health_status == "UNHEALTHY"
    assert victim in (row.health_status_reason or {})
    monitor.cycle()  # past the (zero) grace period: still no repair of a FAILED cluster
    with db.reader() as s:
        assert operations.active_for(s, uuid) is None
    assert _row(db, uuid).status == failed


def test_auto_healing_goes_through_the_services(
    settings: Settings, cluster: tuple[str, Database, OneFakePool]
) -> None:
    """A settled cluster's stopped worker is replaced by a Resize command with a reason: the
    cluster and its worker group move through the lifecycle tables, and the reason (naming
    the new node) is the status_reason, the event's reason and the operation's."""
    uuid, db, pool = cluster
    monitor = HealthMonitor(
        db, certificates.secret_box(settings), CoeRegistry.from_names(settings.enabled_coe_drivers), pool,
        HealthPolicy(grace_seconds=0),
    )  # fmt: skip
    victim = next(name for name in pool.fake.nodes if name.endswith("-node-1"))
    pool.fake.stop_node(victim)
    monitor.cycle()
    monitor.cycle()  # past the (zero) grace period
    with db.reader() as s:
        op = operations.active_for(s, uuid)
        assert op is not None and op.kind == "update"
        reason = str((op.params or {}).get("reason"))
        assert reason.startswith(f"auto-healing: replacing {victim} (") and reason.endswith("-node-2"), reason
        assert victim in op.params["nodes_to_remove"]
        groups = {
            g.role: g.status for g in s.scalars(select(m.NodeGroup).where(m.NodeGroup.cluster_id == uuid))
        }
        events = list(s.scalars(select(m.ClusterEvent).where(m.ClusterEvent.cluster_id == uuid)))
    row = _row(db, uuid)
    assert (row.status, row.status_reason) == ("UPDATE_IN_PROGRESS", reason)
    assert row.health_status == "UNHEALTHY" and victim in (row.health_status_reason or {})
    assert groups == {"master": "CREATE_COMPLETE", "worker": "UPDATE_IN_PROGRESS"}
    assert any(e.status == "UPDATE_IN_PROGRESS" and e.reason == reason for e in events)
