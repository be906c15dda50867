"""Provider-chosen addresses and load balancers, on the fake provider (in memory) and the
pure parts of the local provider (address policy, haproxy configuration)."""

from __future__ import annotations

import pytest

from flotilla.domain import Listener, LoadBalancerSpec, NetworkSpec, NodeSpec
from flotilla.drivers.providers import addressing
from flotilla.drivers.providers.fake import FakeProvider
from flotilla.drivers.providers.local.loadbalancer import haproxy_cfg
from flotilla.errors import FlotillaError

CLUSTER = "c1"


def _node(name: str, role: str = "worker", ip: str | None = None) -> NodeSpec:
    return NodeSpec(
        cluster_uuid=CLUSTER, name=name, role=role, image_ref="img", network="n1", cpus=1, memory_mb=256,  # type: ignore[arg-type]
        command=["true"], ip=ip,
    )  # fmt: skip


@pytest.fixture
def fake() -> FakeProvider:
    provider = FakeProvider()
    provider.ensure_network(NetworkSpec(cluster_uuid=CLUSTER, name="n1"))
    return provider


def test_pick_skips_gateway_used_and_reserved_range() -> None:
    assert addressing.pick("10.0.0.0/24", "10.0.0.1", [], "master") == "10.0.0.10"
    assert addressing.pick("10.0.0.0/24", "10.0.0.1", ["10.0.0.10", "10.0.0.12/24"], "worker") == "10.0.0.11"
    assert addressing.pick("10.0.0.0/24", "10.0.0.1", [], "registry") == "10.0.0.6"
    assert addressing.pick("10.0.0.0/24", "10.0.0.1", ["10.0.0.5"], "lb") == "10.0.0.10"
    full = [f"10.0.0.{i}" for i in range(10, 255)]
    with pytest.raises(FlotillaError, match="no free address"):
        addressing.pick("10.0.0.0/24", "10.0.0.1", full, "worker")


def test_addresses_are_lowest_free_and_reused(fake: FakeProvider) -> None:
    a = fake.ensure_node(_node("m-0", "master")).address
    b = fake.ensure_node(_node("w-0")).address
    assert a is not None and b is not None and a.endswith(".10") and b.endswith(".11")
    fake.delete_node(CLUSTER, "m-0")
    assert fake.ensure_node(_node("w-155")).address == a  # a freed address is handed out again


def test_reserve_is_idempotent_and_kept_by_ensure_node(fake: FakeProvider) -> None:
    promised = fake.reserve_address(CLUSTER, "n1", "w-1", "worker")
    assert fake.reserve_address(CLUSTER, "n1", "w-1", "worker") == promised
    assert fake.reserve_address(CLUSTER, "n1", "w-2", "worker") != promised  # a promise is not given twice
    assert fake.ensure_node(_node("w-1")).address == promised
    assert fake.reserve_address(CLUSTER, "n1", "w-1", "worker") == promised  # the node's own address now


def test_load_balancer_keeps_its_address_when_members_change(fake: FakeProvider) -> None:
    empty = LoadBalancerSpec(CLUSTER, "lb", "n1", (Listener(2376),), image_ref="img")
    lb = fake.ensure_load_balancer(empty)
    assert lb.address is not None and lb.address.endswith(".5")
    assert fake.ensure_load_balancer(empty) == lb  # idempotent
    full = LoadBalancerSpec(
        CLUSTER, "lb", "n1", (Listener(2376, ("10.0.0.10", "10.0.0.11")),), image_ref="img"
    )
    assert fake.ensure_load_balancer(full) == lb
    assert fake.load_balancers["lb"]["applied"] == [empty, full]
    assert fake.find_load_balancer(CLUSTER, "lb") == lb and fake.find_load_balancer("other", "lb") is None
    assert fake.leaks(CLUSTER) == ["load_balancer:lb", "network:n1"]
    fake.delete_load_balancer(CLUSTER, "lb")
    fake.delete_load_balancer(CLUSTER, "lb")  # already gone is success
    assert fake.find_load_balancer(CLUSTER, "lb") is None


def test_sweep_removes_load_balancers(fake: FakeProvider) -> None:
    fake.ensure_load_balancer(LoadBalancerSpec(CLUSTER, "lb", "n1", ()))
    assert "load_balancer:lb" in fake.sweep(CLUSTER)
    assert fake.leaks(CLUSTER) == []


def test_haproxy_configuration_has_one_frontend_per_listener() -> None:
    spec = LoadBalancerSpec(
        CLUSTER, "lb", "n1", (Listener(6443, ("10.0.0.10", "10.0.0.11")), Listener(8443, (), member_port=443))
    )
    cfg = haproxy_cfg(spec).decode()
    assert (
        "bind :6443" in cfg and "server m0 10.0.0.10:6443 check" in cfg and "server m1 10.0.0.11:6443" in cfg
    )
    assert "bind :8443" in cfg and "backend b8443" in cfg and ":443" not in cfg  # no members yet
    assert "option redispatch" in cfg  # a connection to a member that just died is retried on another
