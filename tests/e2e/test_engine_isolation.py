"""Two Flotilla engines on one host (two data dirs) keep their clusters isolated
(issue 14, item 7), on the real engines.

A dockerd that starts flushes the DOCKER-ISOLATION chains all engines share; the
clusters of the engine that was there first then lost their isolation. The host is
made to forward packets (``ip_forward=1``, as with a system Docker) and every node is
given a default route through its bridge, as a root user in a node can do: clusters
must still not reach each other nor the host's services; nodes of one cluster must.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from flotilla.domain import NetworkInfo, NetworkSpec, NodeInfo, NodeSpec
from flotilla.drivers.providers.local import Engine, LocalProvider, firewall, leaks
from flotilla.drivers.providers.local.images import build_workload_image

pytestmark = pytest.mark.e2e

FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


@contextlib.contextmanager
def host_forwarding() -> Iterator[None]:
    old = FORWARD.read_text().strip()
    FORWARD.write_text("1\n")
    try:
        yield
    finally:
        FORWARD.write_text(old + "\n")


def _cluster(provider: LocalProvider, image: str, nodes: int) -> tuple[str, NetworkInfo, list[NodeInfo]]:
    cid = uuid.uuid4().hex[:12]
    net = provider.ensure_network(NetworkSpec(cluster_uuid=cid, name=f"{cid}-net"))
    infos = [
        provider.ensure_node(
            NodeSpec(
                cluster_uuid=cid, name=f"{cid}-n{i}", role="worker", image_ref=image, network=net.name,
                cpus=0.5, memory_mb=64, command=["sleep", "3600"],
            )
        )
        for i in range(nodes)
    ]  # fmt: skip
    for node in infos:  # what root in a node can do: route everything through the host
        res = provider.exec(node, ["ip", "route", "replace", "default", "via", net.gateway])
        assert res.ok, res.stderr
    return cid, net, infos


def _reaches(provider: LocalProvider, node: NodeInfo, address: str) -> bool:
    return provider.exec(node, ["ping", "-c", "1", "-W", "1", address], timeout=20).ok


def _answer(address: str, port: int) -> bytes:
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection((address, port), timeout=5) as conn:
                return conn.recv(64)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_two_engines_keep_their_clusters_isolated(
    engine: Engine, provider: LocalProvider, tmp_path_factory: pytest.TempPathFactory
) -> None:
    if not engine.owned:
        pytest.skip("needs Flotilla's own engine (FLOTILLA_E2E_DOCKER_HOST is set)")
    image = build_workload_image(engine)
    a1, net_a1, (a1n0, a1n1) = _cluster(provider, image, 2)
    a2, _, (a2n0,) = _cluster(provider, image, 1)  # another project's cluster, same engine
    rules_a = firewall.rules(cluster_uuid=a1) + firewall.rules(cluster_uuid=a2)
    assert len(rules_a) >= 2 * 5, rules_a

    # A second engine (another data dir) starts while the first one's clusters run.
    data_b = tmp_path_factory.mktemp("engine-b")
    engine_b = Engine.connect(None, data_b)
    provider_b = LocalProvider(engine_b)
    clusters_b: list[str] = []
    try:
        assert engine_b.engine_id != engine.engine_id
        assert sorted(firewall.rules(cluster_uuid=a1) + firewall.rules(cluster_uuid=a2)) == sorted(rules_a)
        b1, _, (b1n0,) = _cluster(provider_b, build_workload_image(engine_b), 1)
        clusters_b.append(b1)

        with host_forwarding():
            assert _reaches(provider, a1n0, a1n1.address or "")  # one cluster: its nodes talk
            for src, dst in ((a1n0, a2n0), (a2n0, a1n0), (a1n0, b1n0), (b1n0, a1n0), (b1n0, a2n0)):
                assert not _reaches(provider_b if src is b1n0 else provider, src, dst.address or ""), (
                    f"{src.name} reached {dst.name}"
                )
            # The host's services are out of reach (its bridge address), while the host
            # still reaches the nodes.
            assert not _reaches(provider, a1n0, net_a1.gateway)
            with socket.create_server(("0.0.0.0", 0)) as service:  # a host service on every address
                port = str(service.getsockname()[1])
                knock = provider.exec(
                    a1n0, ["sh", "-c", f"echo hi | nc -w 2 {net_a1.gateway} {port}"], timeout=20
                )
                assert knock.returncode != 0, knock
        # The host (the conductor) still reaches the nodes, and gets the answers.
        listen = provider.exec(a1n0, ["sh", "-c", "nc -l -p 7777 -e echo node-answers >/dev/null 2>&1 &"])
        assert listen.ok, listen.stderr
        assert _answer(a1n0.address or "", 7777).startswith(b"node-answers")

        for cid in clusters_b:
            provider_b.sweep(cid)
            assert leaks(engine_b, cid) == []
    finally:
        for cid in clusters_b:
            with contextlib.suppress(Exception):
                provider_b.sweep(cid)
        provider_b.close()
        engine_b.stop()
        shutil.rmtree(data_b, ignore_errors=True)

    # Engine B's stop left the first engine's rules alone; deletes leave no rule behind.
    assert sorted(firewall.rules(cluster_uuid=a1) + firewall.rules(cluster_uuid=a2)) == sorted(rules_a)
    for cid, net in ((a1, f"{a1}-net"), (a2, f"{a2}-net")):
        for node in provider.list_nodes(cid):
            provider.delete_node(cid, node.name)
        provider.delete_network(cid, net)
        assert leaks(engine, cid) == []
        assert firewall.rules(cluster_uuid=cid) == []
