"""Self-healing of a real Kubernetes cluster (issue 12, item 4): 1 master + 2 workers with
``auto_healing_enabled=true`` and a short grace period. A worker whose container is
removed, then one whose container is stopped (its node goes NotReady), is replaced, one
at a time, by an ordinary update operation whose reason names the node and why; the
replacement has a new name and a provider address, registers Ready, the old Node object
is gone from the API, the workload's pods run again, and nothing is left after delete."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from flotilla_server import Server
from test_kubernetes_cluster import Kubectl, _deployment, _node_states, kubeconfig

from flotilla.drivers.providers.local import Engine, LocalProvider, leaks

pytestmark = [pytest.mark.e2e, pytest.mark.kube]


@pytest.fixture(scope="module")
def server(kube_module_server: Server) -> Server:
    """The session's Kubernetes server (tests/e2e/conftest.py: health every second, grace
    3 s, image sync every second) with this module's template."""
    kube_module_server.fl("cluster-template-create", "kh", "--coe", "kubernetes", "--image", "kube",
                          "--external-network", "public", "--network-driver", "flannel",
                          "--docker-storage-driver", "overlay2", "--labels", "auto_healing_enabled=true")  # fmt: skip
    return kube_module_server


def _until(srv: Server, ident: str, pred: Any, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        c = srv.cluster(ident)
        if pred(c):
            return c
        assert time.monotonic() < deadline, c
        time.sleep(0.2)


def _pods(k: Kubectl, selector: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = k.json("get", "pods", "-l", selector)["items"]
    return items


def _heal(server: Server, engine: Engine, k: Kubectl, uuid: str, victim: str, how: str, why: str) -> str:
    """Break ``victim`` (``how``: ``rm`` or ``stop``), wait for the cluster to heal; returns
    the replacement's name."""
    before = set(_node_states(k))
    started = time.monotonic()
    engine.run(["rm", "-f", victim] if how == "rm" else ["stop", "-t", "1", victim])
    c = _until(server, uuid, lambda c: c["status"] == "UPDATE_IN_PROGRESS", 60)
    reason = c["status_reason"] or ""
    assert reason.startswith(f"auto-healing: replacing {victim} ({why}") and " with " in reason, reason
    new = reason.split(" with ", 1)[1].split(";", 1)[0]
    assert new not in before and "-node-" in new, reason
    c = _until(server, uuid, lambda c: c["status"] != "UPDATE_IN_PROGRESS")
    assert c["status"] == "UPDATE_COMPLETE", c["status_reason"]
    assert (
        c["status_reason"].startswith(f"auto-healing: replacing {victim} ({why}")
        and new in c["status_reason"]
    )
    c = _until(server, uuid, lambda c: c["health_status"] == "HEALTHY", 60)
    print(f"\nhealed {victim} ({how}): {time.monotonic() - started:.1f} s to UPDATE_COMPLETE + HEALTHY")
    states = _node_states(k)
    assert victim not in states and states[new] == "Ready" and len(states) == 3, states
    assert set(states.values()) == {"Ready"}, states
    events = server.api("GET", f"/v1/clusters/{uuid}/events").json()["events"]
    assert any(
        e["status"] == "UPDATE_IN_PROGRESS"
        and (e["reason"] or "").startswith(f"auto-healing: replacing {victim}")
        for e in events
    ), events
    return new


def test_workers_are_replaced_one_at_a_time(
    server: Server, engine: Engine, provider: LocalProvider, tmp_path: Path
) -> None:
    server.fl(
        "cluster-create", "heal", "--cluster-template", "kh", "--node-count", "2", "--wait", timeout=600
    )
    c = _until(server, "heal", lambda c: c["health_status"] == "HEALTHY", 60)
    uuid = c["uuid"]
    k = Kubectl(kubeconfig(server, c, tmp_path / "config"))
    w0, w1 = sorted(n for n in _node_states(k) if "-node-" in n)
    server.fl("cluster-image-load", "heal", "busybox")  # recorded: nodes added later get it too
    k.apply(_deployment("keep", 2, ["sleep", "3600"]))
    deadline = time.monotonic() + 120
    while len([p for p in _pods(k, "app=keep") if p["status"].get("phase") == "Running"]) < 2:
        assert time.monotonic() < deadline, _pods(k, "app=keep")
        time.sleep(0.5)

    # The container is gone: the provider says so at once; the Node object is deleted.
    n2 = _heal(server, engine, k, uuid, w1, "rm", "node missing")
    # The container is stopped: the node is drained as far as a dead kubelet allows (its
    # pods are deleted at once), then removed.
    n3 = _heal(server, engine, k, uuid, w0, "stop", "node ")
    c = server.cluster(uuid)
    nodes = {n.name: n for n in provider.list_nodes(uuid)}
    assert set(nodes) == {c["name"] + "-" + uuid[:8] + "-master-0", n2, n3}, nodes
    assert sorted(c["node_addresses"]) == sorted(str(nodes[n].address) for n in (n2, n3))
    # the workload runs again, on the new nodes (the old ones' pods were deleted with them)
    deadline = time.monotonic() + 120
    while True:
        pods = _pods(k, "app=keep")
        running = [
            p
            for p in pods
            if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
        ]
        if len(running) == 2 and len(pods) == 2:
            break
        assert time.monotonic() < deadline, [
            (p["metadata"]["name"], p["spec"].get("nodeName"), p["status"].get("phase")) for p in pods
        ]
        time.sleep(0.5)
    assert {p["spec"]["nodeName"] for p in running} <= {n2, n3}

    server.fl("cluster-delete", "heal", "--wait")
    assert leaks(engine, uuid) == []


def _etcd_members(provider: LocalProvider, uuid: str, master: str) -> list[str]:
    """The etcd member names, asked on ``master`` through etcd's JSON gateway (mutual TLS)."""
    node = next(n for n in provider.list_nodes(uuid) if n.name == master)
    pki = "/etc/kubernetes/pki"
    r = provider.exec(node, ["curl", "-fsS", "--cacert", f"{pki}/ca.crt", "--cert", f"{pki}/apiserver-etcd-client.crt",
                             "--key", f"{pki}/apiserver-etcd-client.key", "-X", "POST", "-d", "{}",
                             "https://127.0.0.1:2379/v3/cluster/member/list"])  # fmt: skip
    assert r.ok, r.stderr
    return sorted(m["name"] for m in json.loads(r.stdout)["members"])


def test_a_dead_master_is_replaced_and_rejoins_etcd(
    server: Server, engine: Engine, provider: LocalProvider, tmp_path: Path
) -> None:
    server.fl("cluster-template-create", "kh-ha", "--coe", "kubernetes", "--image", "kube", "--external-network",
              "public", "--network-driver", "flannel", "--master-lb-enabled", "--docker-storage-driver", "overlay2",
              "--labels", "auto_healing_enabled=true")  # fmt: skip
    server.fl("cluster-create", "healha", "--cluster-template", "kh-ha", "--master-count", "3", "--node-count", "1",
              "--wait", timeout=600)  # fmt: skip
    c = _until(server, "healha", lambda c: c["health_status"] == "HEALTHY", 60)
    uuid, api_address = c["uuid"], c["api_address"]
    k = Kubectl(kubeconfig(server, c, tmp_path / "config"))
    m0, m1, m2 = sorted(n for n in _node_states(k) if "-master-" in n)
    assert _etcd_members(provider, uuid, m0) == [m0, m1, m2]
    started = time.monotonic()
    engine.run(["rm", "-f", m1])
    c = _until(server, uuid, lambda c: c["status"] == "UPDATE_IN_PROGRESS", 60)
    new = m1.rsplit("-", 1)[0] + "-3"
    reason = c["status_reason"]  # the health reason: "master down (node missing); the API is served by ..."
    assert (
        reason.startswith(f"auto-healing: replacing {m1} (master down (node missing)")
        and f" with {new}" in reason
    )
    k("create", "configmap", "during-repair", "--from-literal=a=b")  # the API keeps taking writes
    c = _until(server, uuid, lambda c: c["status"] != "UPDATE_IN_PROGRESS", 300)
    assert c["status"] == "UPDATE_COMPLETE", c["status_reason"]
    c = _until(server, uuid, lambda c: c["health_status"] == "HEALTHY", 90)
    print(f"\nhealed master {m1}: {time.monotonic() - started:.1f} s to UPDATE_COMPLETE + HEALTHY")
    assert c["api_address"] == api_address and c["master_count"] == 3
    states = _node_states(k)
    assert sorted(n for n in states if "-master-" in n) == [m0, m2, new] and set(states.values()) == {"Ready"}
    for master in (m0, m2, new):  # one etcd cluster, the dead member gone, the new one in
        assert _etcd_members(provider, uuid, master) == [m0, m2, new]
    nodes = {n.name: n for n in provider.list_nodes(uuid)}
    assert sorted(c["master_addresses"]) == sorted(str(nodes[n].address) for n in (m0, m2, new))
    assert k("get", "configmap", "during-repair", "-o", "jsonpath={.data.a}") == "b"
    server.fl("cluster-delete", "healha", "--wait")
    assert leaks(engine, uuid) == []
