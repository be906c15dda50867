"""The in-memory provider keeps the Provider contract (idempotency, labels by cluster, faults)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from flotilla.domain import ExecResult, NetworkSpec, NodeInfo, NodeSpec
from flotilla.drivers.base import Provider
from flotilla.drivers.providers.fake import FakeProvider, InjectedFault
from flotilla.errors import Conflict, NotFound


def _spec(name: str, cluster: str = "u1", **kw: object) -> NodeSpec:
    fields: dict[str, object] = {
        "cluster_uuid": cluster,
        "name": name,
        "role": "worker",
        "image_ref": "img:1",
        "network": f"{cluster}-net",
        "cpus": 1.0,
        "memory_mb": 512,
        "command": ["dockerd"],
    }
    fields.update(kw)
    return NodeSpec(**fields)  # type: ignore[arg-type]


def test_is_a_provider() -> None:
    p = FakeProvider()
    assert isinstance(p, Provider)
    assert p.name == "fake"
    assert "exec" in p.capabilities()


def test_network_and_nodes_lifecycle() -> None:
    p = FakeProvider()
    net = p.ensure_network(NetworkSpec(cluster_uuid="u1", name="u1-net"))
    assert net.owned and net.subnet.endswith("/24")
    assert p.ensure_network(NetworkSpec(cluster_uuid="u1", name="u1-net")) == net

    a = p.ensure_node(_spec("a"))
    b = p.ensure_node(_spec("b", ip="172.29.0.50"))
    assert a.state == "running" and a.address is not None and a.address != net.gateway
    assert b.address == "172.29.0.50"
    assert p.ensure_node(_spec("a")) == a  # idempotent: same id, same address

    assert [n.name for n in p.list_nodes("u1")] == ["a", "b"]
    assert p.list_nodes("other") == []

    p.delete_node("u1", "a")
    p.delete_node("u1", "a")  # already gone: success
    p.delete_network("u1", "u1-net")
    p.delete_network("u1", "u1-net")
    assert p.leaks("u1") == ["container:b"]


def test_fixed_network_is_not_owned_or_deleted() -> None:
    p = FakeProvider()
    with pytest.raises(NotFound):
        p.ensure_network(NetworkSpec(cluster_uuid="u1", name="x", fixed_network="shared"))
    p.add_fixed_network("shared")
    info = p.ensure_network(NetworkSpec(cluster_uuid="u1", name="x", fixed_network="shared"))
    assert not info.owned
    p.delete_network("u1", "shared")
    assert "shared" in p.networks
    assert p.leaks() == []


def test_stopped_node_is_started_again_and_exec_reflects_state() -> None:
    p = FakeProvider()
    node = p.ensure_node(_spec("a"))
    assert p.exec(node, ["true"]).ok
    p.stop_node("a")
    assert p.list_nodes("u1")[0].state == "stopped"
    assert not p.exec(node, ["true"]).ok
    assert p.ensure_node(_spec("a")).state == "running"
    p.restart_node(node)
    assert p.nodes["a"]["restarts"] == 1


def test_exec_handler_put_files_and_logs() -> None:
    def handler(node: NodeInfo, argv: Sequence[str], stdin: bytes | None) -> ExecResult:
        return ExecResult(0, f"{node.name}:{' '.join(argv)}", "")

    p = FakeProvider(exec_handler=handler)
    node = p.ensure_node(_spec("a", files={"/etc/x": b"1"}))
    assert p.exec(node, ["echo", "hi"], stdin=b"in").stdout == "a:echo hi"
    assert p.exec_log == [("a", ("echo", "hi"), b"in")]
    p.put_files(node, {"/etc/y": b"2"})
    assert p.nodes["a"]["files"] == {"/etc/x": b"1", "/etc/y": b"2"}


def test_cross_cluster_names_conflict() -> None:
    p = FakeProvider()
    p.ensure_network(NetworkSpec(cluster_uuid="u1", name="n"))
    with pytest.raises(Conflict):
        p.ensure_network(NetworkSpec(cluster_uuid="u2", name="n"))
    p.ensure_node(_spec("a"))
    with pytest.raises(Conflict):
        p.ensure_node(_spec("a", cluster="u2"))
    with pytest.raises(Conflict):
        p.delete_node("u2", "a")


def test_images() -> None:
    p = FakeProvider(images={"img:1"})
    assert p.image_exists("img:1") and not p.image_exists("img:2")
    with pytest.raises(NotFound, match="img:2"):
        p.ensure_node(_spec("a", image_ref="img:2"))
    assert FakeProvider().image_exists("anything")


def test_fault_injection_by_method_node_and_pair() -> None:
    p = FakeProvider(fail_on={"ensure_node": "boom", "bad": "bad node", "exec:a": "exec on a"})
    with pytest.raises(InjectedFault, match="boom"):
        p.ensure_node(_spec("a"))
    p.fail_on.pop("ensure_node")
    node = p.ensure_node(_spec("a"))
    with pytest.raises(InjectedFault, match="bad node"):
        p.ensure_node(_spec("bad"))
    with pytest.raises(InjectedFault, match="exec on a"):
        p.exec(node, ["true"])
    assert p.calls[:2] == [("ensure_node", "a"), ("ensure_node", "a")]


def test_delay_and_thread_safety() -> None:
    p = FakeProvider(delay=0.02)
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        infos = list(pool.map(p.ensure_node, [_spec(f"n{i}") for i in range(16)]))
    assert time.monotonic() - started >= 0.02
    assert len({i.provider_id for i in infos}) == 16
    assert len(p.list_nodes("u1")) == 16


def test_sweep_removes_only_that_cluster() -> None:
    p = FakeProvider()
    p.ensure_network(NetworkSpec(cluster_uuid="u1", name="u1-net"))
    p.ensure_node(_spec("a"))
    p.ensure_node(_spec("z", cluster="u2"))
    assert sorted(p.sweep("u1")) == ["container:a", "network:u1-net"]
    assert p.leaks("u1") == []
    assert p.leaks() == ["container:z"]


def test_fake_nodes_answer_docker_like_a_swarm_daemon() -> None:
    """COE drivers talk to fake nodes through exec as to real ones (no fake checks)."""
    from flotilla.domain import NetworkSpec, NodeSpec

    p = FakeProvider()
    p.ensure_network(NetworkSpec(cluster_uuid="c", name="n"))
    spec = {
        "cluster_uuid": "c",
        "image_ref": "i",
        "network": "n",
        "cpus": 1,
        "memory_mb": 1,
        "command": ["x"],
    }
    m = p.ensure_node(NodeSpec(name="m", role="master", **spec))  # type: ignore[arg-type]
    w = p.ensure_node(NodeSpec(name="w", role="worker", **spec))  # type: ignore[arg-type]
    assert p.exec(m, ["docker", "info", "--format", "{{.Swarm.LocalNodeState}}"]).stdout.strip() == "inactive"
    assert p.exec(m, ["docker", "swarm", "init", "--advertise-addr", "x"]).ok
    assert not p.exec(m, ["docker", "swarm", "init"]).ok  # already part of a swarm
    token = p.exec(m, ["docker", "swarm", "join-token", "-q", "worker"]).stdout.strip()
    assert not p.exec(w, ["docker", "node", "ls"]).ok  # not a manager
    assert p.exec(w, ["docker", "swarm", "join", "--token", token, "m:2377"]).ok
    ls = ["docker", "node", "ls", "--format", "{{.Hostname}} {{.Status}}"]
    assert p.exec(m, ls).stdout.split("\n")[:2] == ["m Ready", "w Ready"]
    p.stop_node("w")
    assert "w Down" in p.exec(m, ls).stdout
    p.delete_node("c", "w")
    w = p.ensure_node(NodeSpec(name="w", role="worker", **spec))  # type: ignore[arg-type]
    assert p.exec(w, ["docker", "info"]).stdout.strip() == "inactive"  # a new container starts outside
    assert p.exec(m, ["docker", "node", "rm", "--force", "w"]).ok
    assert p.exec(m, ls).stdout.strip() == "m Ready"
