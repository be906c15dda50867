"""Replacing a master of an HA Kubernetes cluster, on the fake provider with a stand-in
for etcd's JSON gateway (the fake's ``exec_handler``: the node image's curl talking to
etcd is the boundary; tests/e2e/test_kubernetes_healing.py runs the real one): the plan
only for several masters behind the balancer, etcd's membership changed from a master
that has quorum, the new member added once, the balancer and the new master's etcd
(``--initial-cluster-state=existing``) naming the masters as they now are."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence

import pytest
from test_kubernetes_bootstrap import Ctx as CertCtx

from flotilla.domain import ExecResult, Flavor, NetworkSpec, NodeInfo, NodeSpec
from flotilla.drivers.base import ClusterSpec, NodeGroupSpec
from flotilla.drivers.coe import dockerhost
from flotilla.drivers.coe.kubernetes import bootstrap, etcd, repair
from flotilla.drivers.providers.fake import FakeProvider

PREFIX = "ha-0123abcd"
OLD, M1, M2, NEW = (f"{PREFIX}-master-{i}" for i in (0, 1, 2, 3))


class Ctx(CertCtx):
    """A StepContext over the fake provider and a real CA."""

    def __init__(self, spec: ClusterSpec, provider: FakeProvider) -> None:
        super().__init__(spec)
        self.provider = provider
        self.shown: list[str] = []

    def progress(self, detail: str) -> None:
        self.shown.append(detail)

    def save_outputs(self, **kw: object) -> None:
        pass


class FakeEtcd:
    """etcd's /v3/cluster/member/* as curl on a master sees it; ``down``: masters whose
    etcd does not answer."""

    def __init__(self, provider: FakeProvider) -> None:
        self.provider = provider
        self.members: dict[str, etcd.Member] = {}
        self.down: set[str] = set()
        self.calls: list[tuple[str, str, dict[str, object]]] = []
        self._ids = itertools.count(1000)

    def join(self, name: str, address: str) -> None:
        mid = str(next(self._ids))
        self.members[mid] = etcd.Member(mid, name, (etcd.peer_url(address),))

    def __call__(self, node: NodeInfo, argv: Sequence[str], stdin: bytes | None) -> ExecResult:
        if argv[0] == "test":  # the bootstrap marker
            return ExecResult(0 if argv[-1] in self.provider.nodes[node.name]["files"] else 1, "", "")
        assert argv[0] == "curl", argv
        if node.name in self.down:
            return ExecResult(7, "", "curl: (7) Failed to connect to 127.0.0.1 port 2379")
        path = argv[-1].removeprefix(etcd.CLIENT)
        body = json.loads(stdin or b"{}")
        self.calls.append((node.name, path, body))
        if path.endswith("/remove"):
            del self.members[body["ID"]]
        elif path.endswith("/add"):
            mid = str(next(self._ids))
            self.members[mid] = etcd.Member(mid, "", tuple(body["peerURLs"]))
        out = [{"ID": m.id, "name": m.name, "peerURLs": list(m.peer_urls)} for m in self.members.values()]
        return ExecResult(0, json.dumps({"members": out}), "")


def _spec(
    masters: Sequence[str] = (NEW, M1, M2), remove: Sequence[str] = (OLD,), **kw: object
) -> ClusterSpec:
    flavor = Flavor("m1.small", 1, 1024)
    return ClusterSpec(
        uuid="0123abcd-u", name="ha", coe="kubernetes", image_ref="img",
        master=NodeGroupSpec("m", "master", len(masters), flavor, "img", tuple(masters)),
        worker=NodeGroupSpec("w", "worker", 1, flavor, "img", (f"{PREFIX}-node-0",)),
        nodes_to_remove=tuple(remove), **{"master_lb_enabled": True, **kw},  # type: ignore[arg-type]
    )  # fmt: skip


@pytest.fixture
def cluster() -> tuple[Ctx, FakeProvider, FakeEtcd]:
    """Three masters had run (OLD, M1, M2); OLD's node stopped, its etcd member remains."""
    provider = FakeProvider()
    fake_etcd = FakeEtcd(provider)
    provider.exec_handler = fake_etcd
    ctx = Ctx(_spec(), provider)
    net = provider.ensure_network(NetworkSpec(ctx.spec.uuid, dockerhost.network_name(ctx.spec)))
    for name in (OLD, M1, M2):
        info = provider.ensure_node(
            NodeSpec(ctx.spec.uuid, name, "master", "img", net.name, 1, 512, ["init"])
        )  # type: ignore[arg-type]
        fake_etcd.join(name, str(info.address))
    provider.stop_node(OLD)
    return ctx, provider, fake_etcd


def test_planned_only_for_several_masters_behind_the_balancer() -> None:
    names = [s.name for s in repair.plan(_spec())]
    assert names[:4] == ["removing the failed master from etcd", "adding the new master to etcd",
                         "updating the API load balancer", "starting the new master"]  # fmt: skip
    assert repair.plan(_spec(masters=(NEW,))) == []  # one master: its etcd was the only copy
    assert (
        repair.plan(_spec(masters=(NEW, M1, M2), master_lb_enabled=False)) != []
    )  # several: balanced anyway
    assert repair.plan(_spec(remove=())) == []


def test_a_master_with_quorum_answers(cluster: tuple[Ctx, FakeProvider, FakeEtcd]) -> None:
    ctx, provider, fake_etcd = cluster
    infos = {n.name: n for n in provider.list_nodes(ctx.spec.uuid)}
    fake_etcd.down.add(M1)
    node, members = etcd.healthy_member(ctx, [infos[OLD], infos[M1], infos[M2]])
    assert node.name == M2 and {m.name for m in members} == {OLD, M1, M2}
    fake_etcd.down.add(M2)
    with pytest.raises(RuntimeError, match="no master's etcd answers with quorum") as err:
        etcd.healthy_member(ctx, [infos[OLD], infos[M1], infos[M2]])
    assert f"{OLD}: node stopped" in str(err.value) and "Failed to connect" in str(err.value)


def test_add_new_comes_after_the_removal_and_happens_once(
    cluster: tuple[Ctx, FakeProvider, FakeEtcd],
) -> None:
    ctx, provider, fake_etcd = cluster
    old = next(m for m in fake_etcd.members.values() if m.name == OLD)
    etcd.remove(ctx, provider._info(provider.nodes[M1]), old)  # what remove_old does first
    repair.add_new(ctx)
    repair.add_new(ctx)  # resumed: the member is there already
    adds = [c for c in fake_etcd.calls if c[1].endswith("/add")]
    reserved = provider.reserve_address(ctx.spec.uuid, dockerhost.network_name(ctx.spec), NEW, "master")
    assert [body for _, _, body in adds] == [{"peerURLs": [f"https://{reserved}:2380"]}]
    assert sorted(m.name for m in fake_etcd.members.values()) == ["", M1, M2]


def test_the_new_master_joins_the_existing_etcd_behind_the_updated_balancer(
    cluster: tuple[Ctx, FakeProvider, FakeEtcd],
) -> None:
    ctx, provider, _ = cluster
    provider.delete_node(ctx.spec.uuid, OLD)
    repair.add_new(ctx)
    repair.update_balancer(ctx)
    repair.start_new(ctx)
    nodes = {n.name: n for n in provider.list_nodes(ctx.spec.uuid)}
    (lb,) = provider.load_balancers.values()
    members = {a for listener in lb["spec"].listeners for a in listener.members}
    assert members == {nodes[n].address for n in (NEW, M1, M2)}
    files = provider.nodes[NEW]["files"]
    service = files[f"{bootstrap.SERVICES}/etcd"].decode()
    assert "--initial-cluster-state=existing" in service
    peers = service.split("--initial-cluster=", 1)[1].split()[0]
    assert sorted(peers.split(",")) == sorted(f"{n}=https://{nodes[n].address}:2380" for n in (NEW, M1, M2))
    writes = len([c for c in provider.calls if c == ("put_files", NEW)])
    repair.start_new(ctx)  # resumed after the files were written: not written again
    assert len([c for c in provider.calls if c == ("put_files", NEW)]) == writes == 1
