"""The service controller's reconcile (Kubernetes Services of type LoadBalancer -> provider
load balancers) against the fake provider (in memory, a real Provider implementation).

The Kubernetes API is an in-memory stand-in here (the real API server is exercised by
tests/e2e/test_kubernetes_cluster.py); it keeps Services and records status patches and
events as the API server would."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pytest

from flotilla.domain import Flavor, Listener, LoadBalancerSpec, NetworkSpec, NodeSpec
from flotilla.drivers.base import ClusterSpec, NodeGroupSpec, ServiceLoadBalancing
from flotilla.drivers.coe.kubernetes import KubernetesCoe, service_lb, steps
from flotilla.drivers.coe.kubernetes.service_lb import balancer_name, reconcile
from flotilla.drivers.providers.fake import FakeProvider

UUID = "0123456789abcdef0123"
NET = f"flotilla-{UUID[:12]}"


class FakeServiceApi:
    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self.patches: list[tuple[str, str, Mapping[str, Any]]] = []
        self.events: list[Mapping[str, Any]] = []

    def add(self, name: str, ports: list[dict[str, Any]], *, type_: str = "LoadBalancer",
            namespace: str = "default", **spec: Any) -> None:  # fmt: skip
        self.items[(namespace, name)] = {
            "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"},
            "spec": {"type": type_, "ports": ports, **spec},
            "status": {"loadBalancer": {}},
        }

    def services(self) -> list[dict[str, Any]]:
        return [copy.deepcopy(v) for _, v in sorted(self.items.items())]

    def patch_service_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        self.patches.append((namespace, name, status))
        lb = dict(status["loadBalancer"])
        self.items[(namespace, name)]["status"]["loadBalancer"] = {
            k: v for k, v in lb.items() if v is not None
        }

    def create_event(self, namespace: str, event: Mapping[str, Any]) -> None:
        self.events.append(event)

    def ingress(self, name: str, namespace: str = "default") -> list[str]:
        lb = self.items[(namespace, name)]["status"]["loadBalancer"]
        return [i["ip"] for i in lb.get("ingress") or []]


def _spec(workers: int = 2) -> ClusterSpec:
    flavor = Flavor("m1.small", 1, 512)
    names = tuple(f"k-0123abcd-node-{i}" for i in range(workers))
    return ClusterSpec(
        uuid=UUID, name="k", coe="kubernetes", image_ref="img",
        master=NodeGroupSpec("m", "master", 1, flavor, "img", ("k-0123abcd-master-0",)),
        worker=NodeGroupSpec("w", "worker", workers, flavor, "img", names),
    )  # fmt: skip


def _node(name: str, role: str) -> NodeSpec:
    return NodeSpec(cluster_uuid=UUID, name=name, role=role, image_ref="img", network=NET, cpus=1,  # type: ignore[arg-type]
                    memory_mb=256, command=["true"])  # fmt: skip


@pytest.fixture
def fake() -> FakeProvider:
    p = FakeProvider()
    p.ensure_network(NetworkSpec(cluster_uuid=UUID, name=NET))
    spec = _spec()
    p.ensure_node(_node(spec.master.names[0], "master"))
    for name in spec.worker.names:
        p.ensure_node(_node(name, "worker"))
    # The API server's own balancer (kube-ha / master_lb_enabled): never the controller's.
    p.ensure_load_balancer(LoadBalancerSpec(UUID, "k-0123abcd-lb-0", NET, (Listener(6443),), "img"))
    return p


def _workers(p: FakeProvider) -> tuple[str, ...]:
    return tuple(sorted(n.address or "" for n in p.list_nodes(UUID) if n.role == "worker"))


def _mine(p: FakeProvider) -> dict[str, LoadBalancerSpec]:
    return {n: lb["spec"] for n, lb in p.load_balancers.items() if "-svc-" in n}


def test_one_balancer_per_loadbalancer_service_with_node_ports_and_status(fake: FakeProvider) -> None:
    api, memo, spec = FakeServiceApi(), dict[str, object](), _spec()
    api.add("web", [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080, "protocol": "TCP"},
                    {"name": "alt", "port": 8443, "nodePort": 30443}])  # fmt: skip
    api.add("internal", [{"port": 80}], type_="ClusterIP")
    api.add("other", [{"port": 80, "nodePort": 30001}], loadBalancerClass="example.com/other")
    done = reconcile(spec, fake, api, memo)
    mine = _mine(fake)
    name = balancer_name(spec, "default", "web")
    assert list(mine) == [name] and name.startswith("k-0123abcd-svc-")
    assert mine[name].network == NET and mine[name].image_ref == "img"
    assert mine[name].listeners == (
        Listener(80, _workers(fake), 30080),
        Listener(8443, _workers(fake), 30443),
    )
    address = fake.load_balancers[name]["address"]
    assert api.ingress("web") == [address] and api.ingress("other") == []
    assert address != fake.load_balancers["k-0123abcd-lb-0"]["address"]
    assert any("ensured" in d for d in done)
    assert [e["reason"] for e in api.events] == ["EnsuredLoadBalancer"]
    assert api.events[0]["involvedObject"]["name"] == "web"


def test_a_pass_without_changes_touches_nothing(fake: FakeProvider) -> None:
    api, memo, spec = FakeServiceApi(), dict[str, object](), _spec()
    api.add("web", [{"port": 80, "nodePort": 30080}])
    reconcile(spec, fake, api, memo)
    calls, patches = len(fake.calls), len(api.patches)
    assert reconcile(spec, fake, api, memo) == []
    assert [c for c, _ in fake.calls[calls:]] == ["list_load_balancers", "list_nodes"]
    assert len(api.patches) == patches


def test_after_a_restart_the_same_balancer_is_ensured_again_not_duplicated(fake: FakeProvider) -> None:
    api, spec = FakeServiceApi(), _spec()
    api.add("web", [{"port": 80, "nodePort": 30080}])
    reconcile(spec, fake, api, {})
    before = dict(fake.load_balancers)
    reconcile(spec, fake, api, {})  # a new conductor: empty memory
    assert fake.load_balancers.keys() == before.keys()
    name = balancer_name(spec, "default", "web")
    assert len(fake.load_balancers[name]["applied"]) == 1  # same spec: nothing re-applied


def test_scale_and_port_changes_update_the_balancer_keeping_its_address(fake: FakeProvider) -> None:
    api, memo, spec = FakeServiceApi(), dict[str, object](), _spec()
    api.add("web", [{"port": 80, "nodePort": 30080}])
    reconcile(spec, fake, api, memo)
    name = balancer_name(spec, "default", "web")
    address = fake.load_balancers[name]["address"]
    fake.ensure_node(_node("k-0123abcd-node-2", "worker"))  # scale out
    reconcile(_spec(3), fake, api, memo)
    assert _mine(fake)[name].listeners[0].members == _workers(fake) and len(_workers(fake)) == 3
    fake.delete_node(UUID, "k-0123abcd-node-0")  # scale in
    api.items[("default", "web")]["spec"]["ports"] = [{"port": 81, "nodePort": 30081}]
    reconcile(_spec(3), fake, api, memo)
    assert _mine(fake)[name].listeners == (Listener(81, _workers(fake), 30081),)
    assert len(_workers(fake)) == 2
    assert fake.load_balancers[name]["address"] == address and api.ingress("web") == [address]
    assert len(fake.load_balancers[name]["applied"]) == 3


def test_gone_or_retyped_services_lose_their_balancer(fake: FakeProvider) -> None:
    api, memo, spec = FakeServiceApi(), dict[str, object](), _spec()
    api.add("a", [{"port": 80, "nodePort": 30080}])
    api.add("b", [{"port": 80, "nodePort": 30081}], namespace="team")
    reconcile(spec, fake, api, memo)
    assert len(_mine(fake)) == 2
    del api.items[("default", "a")]
    api.items[("team", "b")]["spec"]["type"] = "ClusterIP"
    done = reconcile(spec, fake, api, memo)
    assert _mine(fake) == {} and "k-0123abcd-lb-0" in fake.load_balancers
    assert api.ingress("b", "team") == []  # cleared: the service still exists
    assert sum(d.startswith("deleted") for d in done) == 2 and memo == {}


def test_udp_ports_are_reported_once_and_tcp_ports_still_balanced(fake: FakeProvider) -> None:
    api, memo, spec = FakeServiceApi(), dict[str, object](), _spec()
    api.add("dns", [{"port": 53, "nodePort": 30053, "protocol": "UDP"},
                    {"port": 53, "nodePort": 30054, "protocol": "TCP"}])  # fmt: skip
    api.add("udp-only", [{"port": 514, "nodePort": 30514, "protocol": "UDP"}])
    reconcile(spec, fake, api, memo)
    reconcile(spec, fake, api, memo)
    warnings = [(e["involvedObject"]["name"], e["message"]) for e in api.events if e["type"] == "Warning"]
    assert sorted(n for n, _ in warnings) == ["dns", "udp-only"]
    assert all("TCP only" in m for _, m in warnings)
    assert [lb.listeners for lb in _mine(fake).values()] == [(Listener(53, _workers(fake), 30054),)]
    assert api.ingress("udp-only") == []


def test_one_failing_balancer_does_not_hold_up_the_others(fake: FakeProvider) -> None:
    api, memo, spec = FakeServiceApi(), dict[str, object](), _spec()
    api.add("bad", [{"port": 80, "nodePort": 30080}])
    api.add("good", [{"port": 80, "nodePort": 30081}])
    fake.fail_on[f"ensure_load_balancer:{balancer_name(spec, 'default', 'bad')}"] = "no capacity"
    with pytest.raises(RuntimeError, match="service default/bad: no capacity"):
        reconcile(spec, fake, api, memo)
    assert api.ingress("good") and not api.ingress("bad")
    assert any(e["reason"] == "SyncLoadBalancerFailed" for e in api.events)
    fake.fail_on.clear()
    reconcile(spec, fake, api, memo)  # the next pass converges
    assert api.ingress("bad")


def test_delete_all_keeps_the_api_balancer(fake: FakeProvider) -> None:
    api, spec = FakeServiceApi(), _spec()
    api.add("a", [{"port": 80, "nodePort": 30080}])
    api.add("b", [{"port": 81, "nodePort": 30081}])
    reconcile(spec, fake, api, {})
    driver = KubernetesCoe()
    assert isinstance(driver, ServiceLoadBalancing)
    assert len(driver.delete_service_load_balancers(spec, fake)) == 2
    assert list(fake.load_balancers) == ["k-0123abcd-lb-0"]
    assert service_lb.delete_all(spec, fake) == []  # idempotent


def test_without_workers_the_masters_take_the_traffic(fake: FakeProvider) -> None:
    for name in _spec().worker.names:
        fake.delete_node(UUID, name)
    masters = tuple(n.address or "" for n in fake.list_nodes(UUID) if n.role == "master")
    assert service_lb.members(_spec(0), fake.list_nodes(UUID)) == masters


class _DeleteCtx:
    """What the delete step uses of a StepContext: spec, provider, progress."""

    def __init__(self, spec: ClusterSpec, provider: FakeProvider) -> None:
        self.spec, self.provider = spec, provider

    def progress(self, detail: str) -> None:
        return None


def test_the_cluster_delete_step_removes_the_service_balancers_by_name(fake: FakeProvider) -> None:
    api, spec = FakeServiceApi(), _spec()
    api.add("web", [{"port": 80, "nodePort": 30080}])
    reconcile(spec, fake, api, {})
    steps.delete_everything(_DeleteCtx(spec, fake))  # type: ignore[arg-type]
    assert ("delete_load_balancer", balancer_name(spec, "default", "web")) in fake.calls
    assert fake.load_balancers == {} and fake.list_nodes(UUID) == []
