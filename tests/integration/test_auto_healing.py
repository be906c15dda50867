"""Auto-healing end to end in this process with the in-memory ``fake`` provider and a real
database: the health monitor's decisions (grace period, one node at a time, the
blast-radius guard, the reasons users see) and, for swarm-mode whose steps run on fake
nodes, the whole replacement. A Kubernetes cluster's steps need a real API server, so
here its create is recorded as done and its nodes put in the fake provider; the health
monitor (with the Kubernetes driver's ``observe``) decides, and the operation it enqueues
is checked; tests/e2e/test_kubernetes_healing.py runs that operation for real."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from tests import kube_cache

from flotilla import healing
from flotilla.conductor.health import HealthMonitor
from flotilla.conductor.providers import ProviderPool
from flotilla.conductor.runner import OpRunner
from flotilla.db import models as m
from flotilla.domain import NetworkSpec, NodeSpec
from flotilla.drivers.base import ClusterSpec, OpKind, Step, StepContext
from flotilla.drivers.coe import dockerhost
from flotilla.drivers.coe.kubernetes import apilb
from flotilla.drivers.coe.kubernetes import labels as kube_labels
from flotilla.drivers.coe.swarm_mode import SwarmModeCoe
from flotilla.drivers.providers.fake import FakeProvider
from flotilla.drivers.registry import CoeRegistry
from flotilla.services import operations, specs
from flotilla.settings import ConductorSettings, Settings

Auth = Callable[..., dict[str, str]]


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path, database_url=db_url, auth_strategy="token", enabled_providers=["fake"],
        default_provider="fake", conductor=ConductorSettings(enabled=False),
    )  # fmt: skip


@pytest.fixture
def h(auth: Auth, register_image: Callable[..., Any]) -> dict[str, str]:
    register_image("flotilla-node", "debian")
    return auth("p1_member", "latest")


@pytest.fixture
def fake(app: FastAPI) -> tuple[FakeProvider, ProviderPool]:
    provider = FakeProvider()
    pool = ProviderPool(app.state.runtime.settings)
    pool._providers["fake"] = provider
    return provider, pool


def _monitor(app: FastAPI, pool: ProviderPool, grace: float = 0, share: float = 0.5) -> HealthMonitor:
    rt = app.state.runtime
    return HealthMonitor(rt.db, rt.box, rt.coes, pool, healing.HealPolicy(grace, share))


def _run_ops(app: FastAPI, pool: ProviderPool) -> int:
    rt, ran = app.state.runtime, 0
    while True:
        with rt.db.session() as s:
            op = operations.claim(s, "test/w0", 30, skip_locked=False)
        if op is None:
            return ran
        OpRunner(rt.db, rt.box, rt.coes, pool, "test/w0", 30).run(op)
        ran += 1


def _create(
    api: TestClient, h: dict[str, str], coe: str, node_count: int, master_count: int = 1, **labels: str
) -> str:
    r = api.post("/v1/clustertemplates", json={"coe": coe, "image_id": "flotilla-node", "name": f"t-{coe}",
                                               "master_lb_enabled": master_count > 1}, headers=h)  # fmt: skip
    assert r.status_code == 201, r.text
    labels = {"auto_healing_enabled": "true", **labels}
    r = api.post("/v1/clusters", json={"cluster_template_id": f"t-{coe}", "name": "c", "node_count": node_count,
                                       "master_count": master_count, "labels": labels}, headers=h)  # fmt: skip
    assert r.status_code == 202, r.text
    uuid: str = r.json()["uuid"]
    return uuid


def _cluster(api: TestClient, h: dict[str, str], uuid: str) -> dict[str, Any]:
    r = api.get(f"/v1/clusters/{uuid}", headers=h)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _events(api: TestClient, h: dict[str, str], uuid: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = api.get(f"/v1/clusters/{uuid}/events", headers=h).json()["events"]
    return events


def _names(app: FastAPI, uuid: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    with app.state.runtime.db.reader() as s:
        spec = specs.build(s, s.scalars(select(m.Cluster).where(m.Cluster.uuid == uuid)).one())
    return spec.master.names, spec.worker.names


def _pending(app: FastAPI, uuid: str) -> m.Operation | None:
    with app.state.runtime.db.reader() as s:
        return operations.active_for(s, uuid)


def _swarm(
    app: FastAPI, api: TestClient, h: dict[str, str], pool: ProviderPool, workers: int, **labels: str
) -> str:
    uuid = _create(api, h, "swarm-mode", workers, **labels)
    assert _run_ops(app, pool) == 1
    assert _cluster(api, h, uuid)["status"] == "CREATE_COMPLETE"
    return uuid


def test_a_stopped_worker_is_replaced_with_a_visible_reason(
    app: FastAPI, api: TestClient, h: dict[str, str], fake: tuple[FakeProvider, ProviderPool]
) -> None:
    provider, pool = fake
    uuid = _swarm(app, api, h, pool, 2)
    monitor = _monitor(app, pool)
    monitor.cycle()
    assert _cluster(api, h, uuid)["health_status"] == "HEALTHY"
    _, (first, victim) = _names(app, uuid)
    provider.stop_node(victim)
    monitor.cycle()
    c = _cluster(api, h, uuid)
    new = victim.rsplit("-", 1)[0] + "-2"
    why = f"auto-healing: replacing {victim} (node stopped) with {new}"
    assert c["status"] == "UPDATE_IN_PROGRESS" and c["status_reason"] == why, c
    assert c["node_count"] == 2
    assert _events(api, h, uuid)[0] == {
        **_events(api, h, uuid)[0],
        "status": "UPDATE_IN_PROGRESS",
        "reason": why,
    }
    op = _pending(app, uuid)
    assert op is not None and op.kind == "update"
    assert (op.params["nodes_to_remove"], op.params["names"], op.params["repair"]) == (
        [victim],
        [first, new],
        victim,
    )
    assert _run_ops(app, pool) == 1
    c = _cluster(api, h, uuid)
    assert c["status"] == "UPDATE_COMPLETE" and c["status_reason"].startswith(
        f"{why}; update completed in "
    ), c
    assert c["node_count"] == 2 and len(c["node_addresses"]) == 2
    assert victim not in provider.nodes and provider.nodes[new]["state"] == "running"
    assert _names(app, uuid)[1] == (first, new)
    reasons = [e["reason"] for e in _events(api, h, uuid)]
    assert reasons[0].startswith(f"{why}; update completed") and reasons[1] == why
    monitor.cycle()
    c = _cluster(api, h, uuid)
    assert c["health_status"] == "HEALTHY" and healing.NOTE_KEY not in c["health_status_reason"], c


def test_one_node_at_a_time(
    app: FastAPI, api: TestClient, h: dict[str, str], fake: tuple[FakeProvider, ProviderPool]
) -> None:
    provider, pool = fake
    uuid = _swarm(app, api, h, pool, 3)
    monitor = _monitor(app, pool)
    _, (w0, w1, w2) = _names(app, uuid)
    provider.stop_node(w0)
    provider.stop_node(w2)  # 2 of 4 nodes: at the 50 % share, not above it
    monitor.cycle()
    op = _pending(app, uuid)
    assert op is not None and op.params["nodes_to_remove"] == [w0]
    monitor.cycle()  # the cluster is busy: nothing more is started, the first op is the only one
    with app.state.runtime.db.reader() as s:
        assert len(list(s.scalars(select(m.Operation).where(m.Operation.cluster_id == uuid)))) == 2
    assert _run_ops(app, pool) == 1
    # swarm's update reconciles every desired node, so it started w2 again (the fake's
    # "stopped" is a process that died); it dies once more:
    provider.stop_node(w2)
    monitor.cycle()  # settled again: the next unhealthy worker
    op = _pending(app, uuid)
    assert op is not None and op.params["nodes_to_remove"] == [w2]
    assert _run_ops(app, pool) == 1
    monitor.cycle()
    c = _cluster(api, h, uuid)
    assert c["status"] == "UPDATE_COMPLETE" and c["health_status"] == "HEALTHY", c
    assert _names(app, uuid)[1] == (w1, *(w0.rsplit("-", 1)[0] + f"-{i}" for i in (3, 4)))


def test_the_grace_period_waits_and_says_until_when(
    app: FastAPI, api: TestClient, h: dict[str, str], fake: tuple[FakeProvider, ProviderPool]
) -> None:
    provider, pool = fake
    uuid = _swarm(app, api, h, pool, 2)
    monitor = _monitor(app, pool, grace=3600)
    victim = _names(app, uuid)[1][0]
    provider.stop_node(victim)
    monitor.cycle()
    monitor.cycle()
    c = _cluster(api, h, uuid)
    assert c["status"] == "CREATE_COMPLETE" and _pending(app, uuid) is None
    note = c["health_status_reason"][healing.NOTE_KEY]
    assert note.startswith(f"{victim} will be replaced at ") and "(grace period 3600 s)" in note, note
    provider.ensure_node(provider.nodes[victim]["spec"])  # it recovers: nothing to replace, no note
    monitor.cycle()
    c = _cluster(api, h, uuid)
    assert c["health_status"] == "HEALTHY" and c["health_status_reason"].get(healing.NOTE_KEY) is None, c


def test_labels_set_the_grace_period_per_cluster(
    app: FastAPI, api: TestClient, h: dict[str, str], fake: tuple[FakeProvider, ProviderPool]
) -> None:
    provider, pool = fake
    uuid = _swarm(app, api, h, pool, 2, **{healing.GRACE_LABEL: "600"})
    victim = _names(app, uuid)[1][1]
    provider.stop_node(victim)
    _monitor(app, pool, grace=0).cycle()  # the setting says now, the cluster's label says 10 min
    assert _pending(app, uuid) is None
    assert "(grace period 600 s)" in _cluster(api, h, uuid)["health_status_reason"][healing.NOTE_KEY]
    r = api.post("/v1/clusters", json={"cluster_template_id": "t-swarm-mode", "name": "bad",
                                       "labels": {healing.SHARE_LABEL: "120%"}}, headers=h)  # fmt: skip
    assert r.status_code == 400 and f"Invalid label {healing.SHARE_LABEL}=120%" in r.text, r.text


def test_auto_healing_off_only_reports(
    app: FastAPI, api: TestClient, h: dict[str, str], fake: tuple[FakeProvider, ProviderPool]
) -> None:
    provider, pool = fake
    uuid = _swarm(app, api, h, pool, 2, auto_healing_enabled="false")
    victim = _names(app, uuid)[1][0]
    provider.stop_node(victim)
    monitor = _monitor(app, pool)
    monitor.cycle()
    monitor.cycle()
    c = _cluster(api, h, uuid)
    assert c["health_status"] == "UNHEALTHY" and c["health_status_reason"] == {victim: "node stopped"}, c
    assert _pending(app, uuid) is None


# ---- Kubernetes ------------------------------------------------------------------------------


def _kube(app: FastAPI, api: TestClient, h: dict[str, str], provider: FakeProvider, masters: int) -> str:
    """A Kubernetes cluster of ``masters`` + 2 workers, auto-healing on, its create recorded
    as done and its nodes (and API load balancer) running in the fake provider."""
    uuid = _create(api, h, "kubernetes", 2, master_count=masters)
    rt = app.state.runtime
    with rt.db.session() as s:
        op = operations.claim(s, "test/w0", 30, skip_locked=False)
        assert op is not None
        operations.finish(s, op, "test/w0")
        spec = specs.build(s, s.scalars(select(m.Cluster).where(m.Cluster.uuid == uuid)).one())
    net = dockerhost.network_name(spec)
    provider.ensure_network(NetworkSpec(cluster_uuid=uuid, name=net))
    for name, role in [
        *((n, "master") for n in spec.master.names),
        *((n, "worker") for n in spec.worker.names),
    ]:
        provider.ensure_node(NodeSpec(uuid, name, role, "flotilla-node", net, 1, 512, ["/sbin/init"]))  # type: ignore[arg-type]
    if masters > 1:
        addresses = [provider.nodes[n]["address"] for n in spec.master.names]
        provider.ensure_load_balancer(apilb.lb_spec(spec, net, addresses))
    return uuid


@pytest.fixture
def kube(
    app: FastAPI, api: TestClient, h: dict[str, str], fake: tuple[FakeProvider, ProviderPool],
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> str:  # fmt: skip
    """1 master + 2 workers (see _kube)."""
    monkeypatch.setenv(kube_labels.CACHE_ENV, str(kube_cache.make(tmp_path / "kube-cache")))
    return _kube(app, api, h, fake[0], 1)


def test_kubernetes_worker_gone_is_replaced_by_the_update_plan(
    app: FastAPI, api: TestClient, h: dict[str, str], fake: tuple[FakeProvider, ProviderPool], kube: str
) -> None:
    provider, pool = fake
    monitor = _monitor(app, pool)
    monitor.cycle()
    assert _cluster(api, h, kube)["health_status"] == "HEALTHY"
    _, (w0, w1) = _names(app, kube)
    provider.delete_node(kube, w1)  # the container is gone
    monitor.cycle()
    c = _cluster(api, h, kube)
    new = w1.rsplit("-", 1)[0] + "-2"
    assert c["status"] == "UPDATE_IN_PROGRESS", c
    assert c["status_reason"] == f"auto-healing: replacing {w1} (node missing) with {new}"
    op = _pending(app, kube)
    assert op is not None and (op.kind, op.params["nodes_to_remove"], op.params["names"]) == (
        "update",
        [w1],
        [w0, new],
    )
    with app.state.runtime.db.reader() as s:  # what the runner will run: drain/remove, start, wait
        spec = specs.build(s, s.scalars(select(m.Cluster).where(m.Cluster.uuid == kube)).one(), op)
    steps = app.state.runtime.coes.get("kubernetes").plan("update", spec)
    assert [st.name for st in steps] == [
        "draining and removing workers",
        "starting new workers",
        "waiting for kubelets",
    ]
    assert spec.worker.names == (w0, new) and spec.nodes_to_remove == (w1,)


def test_kubernetes_guard_two_of_two_workers_down(
    app: FastAPI, api: TestClient, h: dict[str, str], fake: tuple[FakeProvider, ProviderPool], kube: str
) -> None:
    provider, pool = fake
    monitor = _monitor(app, pool, grace=0, share=0.5)
    _, (w0, w1) = _names(app, kube)
    provider.stop_node(w0)
    provider.stop_node(w1)
    monitor.cycle()
    monitor.cycle()
    c = _cluster(api, h, kube)
    assert c["status"] == "CREATE_COMPLETE" and _pending(app, kube) is None, c
    assert c["health_status"] == "UNHEALTHY"
    assert c["health_status_reason"] == {
        w0: "node stopped", w1: "node stopped",
        healing.NOTE_KEY: f"paused: 2 of 3 nodes are unhealthy ({w0}, {w1}), more than the 50% allowed "
        "(1.5 of 3); no node is replaced while that many fail at once: check the host, the network or the image",
    }  # fmt: skip
    provider.ensure_node(provider.nodes[w0]["spec"])  # one comes back: 1 of 3, the other is replaced
    monitor.cycle()
    op = _pending(app, kube)
    assert op is not None and op.params["nodes_to_remove"] == [w1]


def test_kubernetes_dead_master_is_reported_not_replaced(
    app: FastAPI, api: TestClient, h: dict[str, str], fake: tuple[FakeProvider, ProviderPool], kube: str
) -> None:
    provider, pool = fake
    (master,), _ = _names(app, kube)
    provider.stop_node(master)
    _monitor(app, pool).cycle()
    c = _cluster(api, h, kube)
    assert c["status"] == "CREATE_COMPLETE" and _pending(app, kube) is None
    assert c["health_status_reason"][master] == "node stopped"
    assert c["health_status_reason"][healing.NOTE_KEY] == (
        f"{master} is a master, which this cluster cannot replace; not healed"
    )


# ---- a master, through the COE driver's repair plan -----------------------------------------


class RepairingSwarm(SwarmModeCoe):
    """swarm-mode plus a ``repair`` plan for masters: the conductor's side of a master
    replacement (names, reasons, members committed) without Kubernetes' etcd steps, which
    tests/e2e/test_kubernetes_healing.py runs for real."""

    def plan(self, kind: OpKind, spec: ClusterSpec) -> list[Step]:
        if kind != "repair":
            return super().plan(kind, spec)
        return [Step("replacing the master", self._replace)]

    @staticmethod
    def _replace(ctx: StepContext) -> None:
        spec = ctx.spec
        for name in spec.nodes_to_remove:
            ctx.provider.delete_node(spec.uuid, name)
        running = {n.name for n in ctx.provider.list_nodes(spec.uuid)}
        for name in spec.master.names:
            if name not in running:
                ctx.provider.ensure_node(
                    NodeSpec(spec.uuid, name, "master", spec.image_ref, "n", 1, 512, ["init"])
                )


def test_a_master_is_replaced_when_the_driver_plans_a_repair(
    app: FastAPI, api: TestClient, h: dict[str, str], fake: tuple[FakeProvider, ProviderPool]
) -> None:
    provider, pool = fake
    uuid = _swarm(app, api, h, pool, 2)
    (master,), workers = _names(app, uuid)
    provider.stop_node(master)
    swarm = _monitor(app, pool)
    swarm.cycle()  # swarm-mode plans no repair: reported, not replaced
    assert _pending(app, uuid) is None
    note = _cluster(api, h, uuid)["health_status_reason"][healing.NOTE_KEY]
    assert note == f"{master} is a master, which this cluster cannot replace; not healed"

    rt = app.state.runtime
    coes = CoeRegistry([RepairingSwarm()])
    HealthMonitor(rt.db, rt.box, coes, pool, healing.HealPolicy(0, 0.5)).cycle()
    new = master.rsplit("-", 1)[0] + "-1"
    why = f"auto-healing: replacing {master} (node stopped) with {new}"
    c = _cluster(api, h, uuid)
    assert c["status"] == "UPDATE_IN_PROGRESS" and c["status_reason"] == why, c
    op = _pending(app, uuid)
    assert op is not None and op.kind == "repair"
    assert (op.params["nodes_to_remove"], op.params["names"]) == ([master], [new])
    with rt.db.session() as s:
        claimed = operations.claim(s, "test/w0", 30, skip_locked=False)
    assert claimed is not None
    OpRunner(rt.db, rt.box, coes, pool, "test/w0", 30).run(claimed)
    c = _cluster(api, h, uuid)
    assert c["status"] == "UPDATE_COMPLETE" and c["status_reason"].startswith(
        f"{why}; repair completed in "
    ), c
    assert c["master_count"] == 1 and c["node_count"] == 2
    assert _names(app, uuid) == ((new,), workers)
    assert master not in provider.nodes and provider.nodes[new]["state"] == "running"
    with rt.db.reader() as s:
        groups = {g.role: g for g in s.scalars(select(m.NodeGroup).where(m.NodeGroup.cluster_id == uuid))}
    assert groups["master"].status == "UPDATE_COMPLETE" and groups["master"].node_names == [new]


def test_kubernetes_ha_master_gets_a_repair_operation(
    app: FastAPI, api: TestClient, h: dict[str, str], fake: tuple[FakeProvider, ProviderPool],
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:  # fmt: skip
    """Three masters behind the balancer: the Kubernetes driver plans a repair of a master,
    so the monitor starts one (its steps need etcd and an API server: e2e)."""
    monkeypatch.setenv(kube_labels.CACHE_ENV, str(kube_cache.make(tmp_path / "kube-cache")))
    provider, pool = fake
    uuid = _kube(app, api, h, provider, 3)
    (m0, m1, m2), workers = _names(app, uuid)
    provider.delete_node(uuid, m1)
    _monitor(app, pool).cycle()
    c = _cluster(api, h, uuid)
    new = m1.rsplit("-", 1)[0] + "-3"
    assert c["status"] == "UPDATE_IN_PROGRESS", c
    assert c["status_reason"].startswith(f"auto-healing: replacing {m1} (") and c["status_reason"].endswith(
        f" with {new}"
    )
    op = _pending(app, uuid)
    assert op is not None and op.kind == "repair"
    assert (op.params["nodes_to_remove"], op.params["names"]) == ([m1], [m0, new, m2])
    with app.state.runtime.db.reader() as s:
        spec = specs.build(s, s.scalars(select(m.Cluster).where(m.Cluster.uuid == uuid)).one(), op)
    assert spec.master.names == (m0, new, m2) and spec.worker.names == workers
    steps = app.state.runtime.coes.get("kubernetes").plan("repair", spec)
    assert [st.name for st in steps][:2] == [
        "removing the failed master from etcd",
        "adding the new master to etcd",
    ]
