"""The Provider contract (``flotilla.drivers.base.Provider``), one set of tests for every
provider: the fake (in memory) and the local one (a real, dedicated Docker Engine: the
``local`` cases are marked e2e; run them under the engine lock,
``flock /tmp/flotilla-engine.lock .venv/bin/python -m pytest tests/contract``).

A new provider (OpenStack) joins by adding a ``Subject`` factory to ``SUBJECTS``: a
provider, an image its nodes run, how to read a file on a node (the test's own view,
not the provider's ``exec``) and how to list what it leaked for a cluster.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from flotilla.domain import Listener, LoadBalancerSpec, NetworkSpec, NodeInfo, NodeSpec
from flotilla.drivers.base import Provider
from flotilla.drivers.providers.fake import FakeProvider
from flotilla.errors import FlotillaError


@dataclass
class Subject:
    provider: Provider
    cluster: str
    image: str
    #: The content of ``path`` on the node (what a test sees on the node, by other means).
    read_file: Callable[[NodeInfo, str], bytes]
    #: What is left of ``cluster`` in the backend (containers, networks, volumes, balancers).
    leaks: Callable[[], list[str]]

    def net(self, suffix: str = "net") -> str:
        return self.provider.ensure_network(NetworkSpec(self.cluster, f"{self.cluster}-{suffix}")).name

    def node(self, name: str, network: str, role: str = "worker", **kw: object) -> NodeSpec:
        return NodeSpec(
            cluster_uuid=self.cluster, name=f"{self.cluster}-{name}", role=role, image_ref=self.image,  # type: ignore[arg-type]
            network=network, cpus=0.5, memory_mb=256, command=["sleep", "3600"], **kw,  # type: ignore[arg-type]
        )  # fmt: skip


def _fake() -> Iterator[Subject]:
    fake = FakeProvider()
    cluster = uuid.uuid4().hex[:12]

    def read(node: NodeInfo, path: str) -> bytes:
        return bytes(fake.nodes[node.name]["files"][path])

    yield Subject(fake, cluster, "img", read, lambda: fake.leaks(cluster))


def _local(request: pytest.FixtureRequest) -> Iterator[Subject]:
    from flotilla.drivers.providers.local import leaks

    engine = request.getfixturevalue("engine")
    provider = request.getfixturevalue("provider")
    image = request.getfixturevalue("hostroot_image")
    cluster = uuid.uuid4().hex[:12]

    def read(node: NodeInfo, path: str) -> bytes:
        return str(engine.run(["exec", node.name, "cat", path]).stdout).encode()

    try:
        yield Subject(provider, cluster, image, read, lambda: leaks(engine, cluster))
    finally:
        provider.sweep(cluster)


SUBJECTS = ["fake", pytest.param("local", marks=pytest.mark.e2e)]


@pytest.fixture(params=SUBJECTS)
def subject(request: pytest.FixtureRequest) -> Iterator[Subject]:
    gen = _fake() if request.param == "fake" else _local(request)
    yield from gen


# ------------------------------------------------------------------------- networks


def test_network_ensure_is_idempotent_and_delete_tolerates_missing(subject: Subject) -> None:
    p = subject.provider
    spec = NetworkSpec(subject.cluster, f"{subject.cluster}-net")
    first = p.ensure_network(spec)
    again = p.ensure_network(spec)
    assert (again.name, again.subnet, again.gateway, again.owned) == (
        first.name,
        first.subnet,
        first.gateway,
        True,
    )
    other = p.ensure_network(NetworkSpec(subject.cluster, f"{subject.cluster}-other"))
    assert other.subnet != first.subnet
    for name in (first.name, other.name):
        p.delete_network(subject.cluster, name)
        p.delete_network(subject.cluster, name)  # already gone: success
    assert subject.leaks() == []


# ------------------------------------------------------------------------- addresses


def test_reserve_address_is_unique_idempotent_and_kept_by_the_node(subject: Subject) -> None:
    p, net = subject.provider, subject.net()
    a = p.reserve_address(subject.cluster, net, f"{subject.cluster}-w0", "worker")
    b = p.reserve_address(subject.cluster, net, f"{subject.cluster}-w1", "worker")
    assert a != b
    assert p.reserve_address(subject.cluster, net, f"{subject.cluster}-w0", "worker") == a
    node = p.ensure_node(subject.node("w0", net))
    assert node.address == a  # the promise is kept
    assert p.reserve_address(subject.cluster, net, node.name, "worker") == a  # and now the node's own


def test_a_freed_address_is_handed_out_again(subject: Subject) -> None:
    p, net = subject.provider, subject.net()
    first = p.ensure_node(subject.node("w0", net))
    p.ensure_node(subject.node("w1", net))
    p.delete_node(subject.cluster, first.name)
    again = p.ensure_node(subject.node("w2", net))
    assert again.address == first.address


# ------------------------------------------------------------------------- nodes


def test_ensure_node_is_idempotent_and_list_nodes_shows_it(subject: Subject) -> None:
    p, net = subject.provider, subject.net()
    one = p.ensure_node(subject.node("m0", net, role="master"))
    assert (one.state, one.role, one.cluster_uuid) == ("running", "master", subject.cluster)
    assert one.address is not None and one.provider_id
    again = p.ensure_node(subject.node("m0", net, role="master"))
    assert (again.name, again.address, again.provider_id) == (one.name, one.address, one.provider_id)
    two = p.ensure_node(subject.node("w0", net))
    listed = p.list_nodes(subject.cluster)
    assert {n.name: (n.role, n.address, n.state) for n in listed} == {
        one.name: ("master", one.address, "running"), two.name: ("worker", two.address, "running"),
    }  # fmt: skip
    assert {n.name for n in p.list_nodes()} >= {one.name, two.name}  # every cluster's nodes
    p.delete_node(subject.cluster, one.name)
    p.delete_node(subject.cluster, one.name)  # already gone: success
    assert [n.name for n in p.list_nodes(subject.cluster)] == [two.name]


def test_files_exec_and_put_files(subject: Subject) -> None:
    p, net = subject.provider, subject.net()
    node = p.ensure_node(subject.node("w0", net, files={"/etc/flotilla/hello": b"one\n"}))
    assert subject.read_file(node, "/etc/flotilla/hello") == b"one\n"  # placed before the command ran
    assert p.exec(node, ["true"]).ok
    p.put_files(node, {"/etc/flotilla/hello": b"two\n", "/etc/flotilla/new": b"new\n"})
    assert subject.read_file(node, "/etc/flotilla/hello") == b"two\n"
    assert subject.read_file(node, "/etc/flotilla/new") == b"new\n"
    p.delete_node(subject.cluster, node.name)
    assert not p.exec(node, ["true"]).ok  # a gone node answers with a failure, not an exception
    with pytest.raises(FlotillaError):
        p.put_files(node, {"/etc/flotilla/x": b"x"})


# ------------------------------------------------------------------------- load balancers


def test_load_balancer_ensure_find_delete_are_idempotent(subject: Subject) -> None:
    p, net = subject.provider, subject.net()
    member = p.ensure_node(subject.node("m0", net, role="master"))
    assert member.address is not None
    name = f"{subject.cluster}-lb-0"
    empty = LoadBalancerSpec(subject.cluster, name, net, (Listener(2376),), image_ref=subject.image)
    lb = p.ensure_load_balancer(empty)
    assert lb.address is not None and lb.address != member.address
    assert p.ensure_load_balancer(empty).address == lb.address
    full = LoadBalancerSpec(
        subject.cluster, name, net, (Listener(2376, (member.address,)),), image_ref=subject.image
    )
    assert p.ensure_load_balancer(full).address == lb.address  # members change, the address does not
    found = p.find_load_balancer(subject.cluster, name)
    assert found is not None and found.address == lb.address
    assert p.find_load_balancer("another-cluster", name) is None
    p.delete_load_balancer(subject.cluster, name)
    p.delete_load_balancer(subject.cluster, name)  # already gone: success
    assert p.find_load_balancer(subject.cluster, name) is None


# ------------------------------------------------------------------------- sweep


def test_sweep_leaves_nothing(subject: Subject) -> None:
    p, net = subject.provider, subject.net()
    subject.net("second")
    node = p.ensure_node(subject.node("w0", net))
    p.ensure_load_balancer(LoadBalancerSpec(subject.cluster, f"{subject.cluster}-lb", net, (Listener(80),),
                                            image_ref=subject.image))  # fmt: skip
    p.reserve_address(subject.cluster, net, f"{subject.cluster}-later", "worker")
    assert subject.leaks()
    removed = p.sweep(subject.cluster)
    assert any(node.name in entry for entry in removed)
    assert subject.leaks() == []
    assert p.list_nodes(subject.cluster) == []
    assert p.sweep(subject.cluster) == []  # nothing left to remove
