"""Kubernetes clusters beyond the guide's default flow, on the real Docker Engine:

* each ``flannel_backend`` the guide names other than the default vxlan (``udp``: flanneld's
  TUN device; ``host-gw``: plain routes via the nodes' addresses, on a network the provider
  forwards pod addresses on) carries a pod on one worker to a pod and to a ClusterIP
  service on the other worker (the two clusters are created at the same time);
* images loaded with ``cluster-image-load`` reach a node added later while the scale
  boots it (before it is reported Ready), so a pod pinned to it with
  ``imagePullPolicy: Never`` runs at once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flotilla_server import Pending, Server
from test_kubernetes_cluster import Kubectl, _deployment, _node_states, _running_pods, kubeconfig

from flotilla.drivers.providers.local import Engine, LocalProvider, leaks

pytestmark = [pytest.mark.e2e, pytest.mark.kube]


BACKENDS = ["udp", "host-gw"]


def _name(backend: str) -> str:
    return f"fl-{backend.replace('-', '')}"


@pytest.fixture(scope="module")
def server(kube_module_server: Server) -> Server:
    """The session's Kubernetes server (tests/e2e/conftest.py)."""
    return kube_module_server


@pytest.fixture(scope="module")
def creates(server: Server) -> Iterator[dict[str, Pending]]:
    """One template and one ``cluster-create --wait`` per backend, both creates in flight at
    once (the test of each backend collects its own)."""
    for backend in BACKENDS:
        server.fl("cluster-template-create", _name(backend), "--coe", "kubernetes", "--image", "kube",
                  "--external-network", "public", "--master-flavor", "m1.medium", "--flavor", "m1.small",
                  "--network-driver", "flannel", "--docker-volume-size", "5",
                  "--labels", f"flannel_backend={backend}")  # fmt: skip
    pending: dict[str, Pending] = {}
    for backend in BACKENDS:
        pending[backend] = server.fl_start("cluster-create", _name(backend), "--cluster-template", _name(backend),
                                           "--master-count", "1", "--node-count", "2", "--wait")  # fmt: skip
    yield pending
    for p in pending.values():
        p.stop()


def _exec_until(k: Kubectl, pod: str, script: str, want: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        got = k("exec", pod, "--", "sh", "-c", script, check=False)
        if want in got:
            return got
        assert time.monotonic() < deadline, f"{script!r} never printed {want!r}; last output: {got!r}"
        time.sleep(1)


def _node_exec(engine: Engine, node: str, *argv: str) -> str:
    return engine.run(["exec", node, *argv]).stdout


@pytest.mark.parametrize("backend", BACKENDS)
def test_flannel_backend_carries_pods_across_workers(
    server: Server,
    creates: dict[str, Pending],
    engine: Engine,
    provider: LocalProvider,
    tmp_path: Path,
    backend: str,
) -> None:
    name = _name(backend)
    creates[backend].result(timeout=600)
    c = server.cluster(name)
    uuid = c["uuid"]
    try:
        assert c["status"] == "CREATE_COMPLETE", c["status_reason"]
        k = Kubectl(kubeconfig(server, c, tmp_path / "config"))
        states = _node_states(k)
        workers = sorted(n for n in states if "-node-" in n)
        assert len(workers) == 2 and set(states.values()) == {"Ready"}, states

        # The backend really in use on the nodes: udp's TUN device, host-gw's plain routes.
        routes = _node_exec(engine, workers[0], "ip", "route")
        links = _node_exec(engine, workers[0], "ip", "-o", "link")
        other = provider_address(provider, uuid, workers[1])
        if backend == "udp":
            assert "flannel0" in links and "flannel.1" not in links, links
        else:
            assert f"via {other} dev eth0" in routes and "flannel" not in links, (routes, links)

        loaded = server.fl("cluster-image-load", name, "busybox", timeout=300)
        assert loaded.stdout.strip() == "busybox:local", loaded
        http = ["httpd", "-f", "-p", "8080", "-h", "/etc"]
        k.apply(_deployment("solo", 1, http, nodeSelector={"kubernetes.io/hostname": workers[0]}))
        k.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "solo"},
                 "spec": {"selector": {"app": "solo"}, "ports": [{"port": 80, "targetPort": 8080}]}})  # fmt: skip
        k.apply(
            _deployment("probe", 1, ["sleep", "3600"], nodeSelector={"kubernetes.io/hostname": workers[1]})
        )
        solo = _running_pods(k, "app=solo", 1)[0]
        probe = _running_pods(k, "app=probe", 1)[0]
        assert solo["spec"]["nodeName"] == workers[0] and probe["spec"]["nodeName"] == workers[1]
        pod_ip = solo["status"]["podIP"]
        cluster_ip = k.json("get", "service", "solo")["spec"]["clusterIP"]
        get = "printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {} {}"
        probe_name = probe["metadata"]["name"]
        _exec_until(k, probe_name, get.format(pod_ip, 8080), "200 OK")  # pod to pod, node to node
        _exec_until(k, probe_name, get.format(cluster_ip, 80), "200 OK")  # through the ClusterIP
        if backend == "udp":
            _image_reaches_a_node_added_later(server, engine, k, name, uuid)
    finally:
        server.fl("cluster-delete", name, "--wait", check=False, timeout=300)
        server.fl("cluster-template-delete", name, check=False)
    assert server.wait(uuid) == {}
    assert leaks(engine, uuid) == []


def provider_address(provider: LocalProvider, uuid: str, node: str) -> str:
    info = next(n for n in provider.list_nodes(uuid) if n.name == node)
    assert info.address, info
    return info.address


def _image_reaches_a_node_added_later(
    server: Server, engine: Engine, k: Kubectl, name: str, uuid: str
) -> None:
    """busybox:local was loaded into every node; a scale +1 boots a node that has it when the
    scale completes (imported while the node started, not by the later image sync)."""
    before = set(_node_states(k))
    server.fl("cluster-update", name, "replace", "node_count=3", "--wait", timeout=300)
    c = server.cluster(name)
    assert c["status"] == "UPDATE_COMPLETE", c["status_reason"]
    states = _node_states(k)
    (new,) = set(states) - before
    assert states[new] == "Ready", states
    images = _node_exec(engine, new, "ctr", "-n", "k8s.io", "images", "ls", "-q")
    assert any(ref.endswith("busybox:local") for ref in images.split()), images
    assert f"loaded into {new} at its boot" in server.log(), server.log()[-3000:]
    pinned: dict[str, Any] = {"nodeSelector": {"kubernetes.io/hostname": new}}
    k.apply(_deployment("pinned", 1, ["sleep", "3600"], **pinned))
    pod = _running_pods(k, "app=pinned", 1, timeout=60)[0]
    assert pod["spec"]["nodeName"] == new
