"""The guide's Kubernetes chapter on the real Docker Engine, on ONE cluster of 1 master and
2 nodes (``k8sbay``) that the tests of this module share, in this order (each builds on
what the one before left; the destructive steps come last):

1. kubectl over TLS from ``api_address`` (credentials signed through the Magnum CSR route,
   as magnumclient's cluster-config does), pods spread over both workers, a ClusterIP
   service reached from the other node by its DNS name, logs and exec through the kubelets;
2. a Service of type LoadBalancer (the guide's nginx-style example) gets an external
   address from Flotilla's service controller and answers there to this process;
3. scale out (the new worker joins the service's balancer, same address) and in (drained);
4. deleting the service removes its balancer; another service still there at the end goes
   with the cluster;
5. health names a stopped worker; the delete leaves nothing behind.

First, a cluster of three masters behind the load balancer without TLS is created, checked
and deleted (on its own: a 3-master create next to another one timed out its API server on
a loaded machine).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from flotilla_server import Pending, Server
from kube_helpers import (  # also imported from here by the other Kubernetes modules
    KUBECTL,
    Kubectl,
    _deployment,
    _load_busybox,
    _node_states,
    _running_pods,
    _wait_health,
    kubeconfig,
)
from kube_lb_flow import APP, deploy, service, wait_answer, wait_ingress

from flotilla.drivers.providers.local import Engine, LocalProvider, leaks
from flotilla.drivers.providers.local.loadbalancer import CONFIG

pytestmark = [pytest.mark.e2e, pytest.mark.kube]

__all__ = [
    "KUBECTL",
    "Kubectl",
    "_deployment",
    "_load_busybox",
    "_node_states",
    "_running_pods",
    "kubeconfig",
]


@pytest.fixture(scope="module")
def server(kube_module_server: Server) -> Server:
    kube_module_server.fl(
        "baymodel-create", "--name", "k8sbaymodel", "--image-id", "kube", "--keypair-id", "testkey",
        "--external-network-id", "public", "--dns-nameserver", "8.8.8.8", "--flavor-id", "m1.small",
        "--master-flavor-id", "m1.medium", "--docker-volume-size", "5", "--network-driver", "flannel",
        "--coe", "kubernetes",
    )  # fmt: skip
    return kube_module_server


@pytest.fixture(scope="module")
def bay_create(server: Server) -> Iterator[Pending]:
    """The guide's ``bay-create ... --wait`` of ``k8sbay``, started without waiting for it."""
    pending = server.fl_start("bay-create", "--name", "k8sbay", "--baymodel", "k8sbaymodel", "--master-count", "1",
                              "--node-count", "2", "--wait")  # fmt: skip
    yield pending
    pending.stop()


@dataclass
class Lb:
    """What the LoadBalancer test left for the later ones: the service's address, its
    balancer's name, the nodePort, the pods that answer."""

    ip: str
    name: str
    node_port: int
    pods: set[str]
    lbs: dict[str, str | None]


@dataclass
class Bay:
    cluster: dict[str, Any]
    k: Kubectl
    master: str
    workers: list[str]
    lb: Lb | None = field(default=None)

    @property
    def uuid(self) -> str:
        return str(self.cluster["uuid"])


@pytest.fixture(scope="module")
def bay(server: Server, bay_create: Pending, tmp_path_factory: pytest.TempPathFactory) -> Bay:
    bay_create.result(timeout=600)
    c = server.cluster("k8sbay")
    assert c["status"] == "CREATE_COMPLETE", c["status_reason"]
    k = Kubectl(kubeconfig(server, c, tmp_path_factory.mktemp("k8sbay") / "config"))
    master, *workers = sorted(_node_states(k), key=lambda n: "-master-" not in n)
    return Bay(c, k, master, workers)


def test_three_masters_behind_the_load_balancer_without_tls(
    server: Server, engine: Engine, tmp_path: Path
) -> None:
    """Stacked etcd on three masters behind haproxy; tls_disabled gives Magnum's insecure
    port, for which magnumclient writes a kubeconfig without credentials."""
    server.fl("cluster-template-create", "k8s-ha-insecure", "--coe", "kubernetes", "--image", "kube",
              "--external-network", "public", "--master-flavor", "m1.medium", "--flavor", "m1.small",
              "--network-driver", "flannel", "--tls-disabled", "--master-lb-enabled",
              "--docker-storage-driver", "overlay2")  # fmt: skip
    server.fl("cluster-create", "ha-insecure", "--cluster-template", "k8s-ha-insecure", "--master-count", "3",
              "--node-count", "1", "--wait", timeout=600)  # fmt: skip
    c = server.cluster("ha-insecure")
    assert c["status"] == "CREATE_COMPLETE", c["status_reason"]
    assert c["api_address"].startswith("http://") and c["api_address"].endswith(":8080")
    lb = c["api_address"].removeprefix("http://").split(":")[0]
    assert lb not in c["master_addresses"] and len(c["master_addresses"]) == 3
    config = tmp_path / "config"
    config.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "ha",
        "clusters": [{"name": "ha", "cluster": {"server": c["api_address"]}}],
        "contexts": [{"name": "ha", "context": {"cluster": "ha", "user": "ha"}}], "users": [{"name": "ha"}],
    }))  # fmt: skip
    k = Kubectl(config)
    states = _node_states(k)
    assert len(states) == 4 and set(states.values()) == {"Ready"}, states
    masters = sorted(n for n in states if "-master-" in n)
    engine.run(["stop", "-t", "1", masters[1]])  # one master down: the API still answers through the LB
    for _ in range(5):
        assert len(_node_states(k)) == 4
    server.fl("cluster-delete", "ha-insecure", "--wait")
    assert leaks(engine, c["uuid"]) == []


def test_guide_kubernetes_flow(
    bay: Bay, engine: Engine, provider: LocalProvider, workload_image: str
) -> None:
    c, k, master, workers = bay.cluster, bay.k, bay.master, bay.workers
    assert c["api_address"] == f"https://{c['master_addresses'][0]}:6443"
    assert len(c["node_addresses"]) == 2 and c["coe_version"].startswith("v1.37")
    states = _node_states(k)
    assert len(states) == 3 and set(states.values()) == {"Ready"}, states
    assert "-master-" in master and all("-node-" in w for w in workers), states
    taints = k.json("get", "node", master)["spec"].get("taints") or []
    assert {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"} in taints

    _load_busybox(engine, provider, bay.uuid, workload_image)
    spread = {"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                             "whenUnsatisfiable": "DoNotSchedule", "nodeTaintsPolicy": "Honor",
                                             "labelSelector": {"matchLabels": {"app": "web"}}}]}  # fmt: skip
    k.apply(_deployment("web", 4, ["httpd", "-f", "-p", "8080", "-h", "/etc"], **spread))
    # The guide's word: a replication controller, spread over the workers as well.
    k.apply({"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "rc"},
             "spec": {"replicas": 2, "selector": {"app": "rc"},
                      "template": {"metadata": {"labels": {"app": "rc"}},
                                   "spec": {"terminationGracePeriodSeconds": 1,
                                            "containers": [{"name": "rc", "image": "busybox:local",
                                                            "imagePullPolicy": "Never",
                                                            "args": ["sleep", "3600"]}]}}}})  # fmt: skip
    web = _running_pods(k, "app=web", 4)
    assert {p["spec"]["nodeName"] for p in web} == set(workers), [p["spec"]["nodeName"] for p in web]
    assert not any(p["spec"]["nodeName"] == master for p in _running_pods(k, "app=rc", 2))

    # A ClusterIP service on one worker, reached by name from a pod on the other one.
    http = ["httpd", "-f", "-p", "8080", "-h", "/etc"]
    k.apply(_deployment("solo", 1, http, nodeSelector={"kubernetes.io/hostname": workers[0]}))
    k.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "solo"},
             "spec": {"selector": {"app": "solo"}, "ports": [{"port": 80, "targetPort": 8080}]}})  # fmt: skip
    probe_args = ["sh", "-c", "echo probe-started; exec sleep 3600"]
    k.apply(_deployment("probe", 1, probe_args, nodeSelector={"kubernetes.io/hostname": workers[1]}))
    _running_pods(k, "app=solo", 1)
    probe = _running_pods(k, "app=probe", 1)[0]["metadata"]["name"]
    deadline = time.monotonic() + 60
    while True:  # CoreDNS and the service's endpoints settle in a few seconds
        dns = k("exec", probe, "--", "nslookup", "solo.default.svc.cluster.local", check=False)
        got = k("exec", probe, "--", "sh", "-c", "printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc -w 3 solo 80",
                check=False)  # fmt: skip
        if "200 OK" in got and "Address" in dns:
            break
        assert time.monotonic() < deadline, (dns, got)
        time.sleep(1)
    cluster_ip = k.json("get", "service", "solo")["spec"]["clusterIP"]
    assert cluster_ip in dns, dns
    assert "probe-started" in k("logs", probe)


def _service_lbs(provider: LocalProvider, uuid: str) -> dict[str, str | None]:
    return {lb.name: lb.address for lb in provider.list_load_balancers(uuid) if "-svc-" in lb.name}


def _haproxy_cfg(provider: LocalProvider, uuid: str, name: str) -> str:
    node = next(n for n in provider.list_nodes(uuid) if n.name == name)
    r = provider.exec(node, ["cat", CONFIG])
    assert r.ok, r.stderr
    return r.stdout


def _wait_lbs(provider: LocalProvider, uuid: str, count: int, timeout: float = 30) -> dict[str, str | None]:
    deadline = time.monotonic() + timeout
    while len(lbs := _service_lbs(provider, uuid)) != count:
        assert time.monotonic() < deadline, lbs
        time.sleep(0.1)
    return lbs


def test_loadbalancer_service_answers_from_the_host(
    server: Server, bay: Bay, provider: LocalProvider
) -> None:
    c, k = bay.cluster, bay.k
    server.fl("cluster-image-load", "k8sbay", "busybox", timeout=300)
    deploy(k)
    pods = {p["metadata"]["name"] for p in _running_pods(k, f"app={APP}", 2)}

    k.apply(service())
    ip = wait_ingress(k)
    answer = wait_answer(f"http://{ip}/hostname")
    assert answer in pods, (answer, pods)
    lbs = _service_lbs(provider, bay.uuid)
    assert list(lbs.values()) == [ip], lbs
    assert ip not in [*c["master_addresses"], *c["node_addresses"]]
    lb_name = next(iter(lbs))
    cfg = _haproxy_cfg(provider, bay.uuid, lb_name)
    node_port = k.json("get", "service", APP)["spec"]["ports"][0]["nodePort"]
    assert f"{c['node_addresses'][0]}:{node_port}" in cfg and ":80\n" in cfg, cfg
    events = k("get", "events", "--field-selector", f"involvedObject.name={APP}")
    assert "EnsuredLoadBalancer" in events, events
    bay.lb = Lb(ip, lb_name, node_port, pods, lbs)


def test_scale_out_and_in(
    server: Server, bay: Bay, engine: Engine, provider: LocalProvider, workload_image: str
) -> None:
    """Scale out to 3 workers (the new one joins the service's balancer), then in to 1: the
    removed workers are drained first."""
    k, master, lb = bay.k, bay.master, bay.lb
    assert lb is not None, "needs the LoadBalancer service of the test before"
    server.fl("bay-update", "k8sbay", "replace", "node_count=3", "--wait", timeout=300)
    c = server.cluster("k8sbay")
    assert c["status"] == "UPDATE_COMPLETE", c["status_reason"]
    states = _node_states(k)
    assert len(states) == 4 and set(states.values()) == {"Ready"}, states
    deadline = time.monotonic() + 30
    while not all(
        f"{a}:{lb.node_port}" in (cfg := _haproxy_cfg(provider, bay.uuid, lb.name))
        for a in c["node_addresses"]
    ):
        assert time.monotonic() < deadline, cfg
        time.sleep(0.2)
    assert wait_answer(f"http://{lb.ip}/hostname") in lb.pods  # same address after the change
    assert _service_lbs(provider, bay.uuid) == lb.lbs
    _load_busybox(engine, provider, bay.uuid, workload_image)  # the new node too

    server.fl("bay-update", "k8sbay", "replace", "node_count=1", "--wait", timeout=300)
    c = server.cluster("k8sbay")
    assert c["status"] == "UPDATE_COMPLETE", c["status_reason"]
    states = _node_states(k)
    assert len(states) == 2 and set(states.values()) == {"Ready"}, states
    left = next(n for n in states if n != master)
    web = _running_pods(k, "app=web", 4)  # evicted and rescheduled on the remaining worker (skew allows it)
    assert {p["spec"]["nodeName"] for p in web} == {left}
    # the master and the one worker left, and the service's balancer
    assert sorted(n.role for n in provider.list_nodes(bay.uuid)) == ["lb", "master", "worker"]


def test_deleting_the_service_removes_its_balancer(bay: Bay, engine: Engine, provider: LocalProvider) -> None:
    k, lb = bay.k, bay.lb
    assert lb is not None, "needs the LoadBalancer service of the test before"
    # Deleting the service removes its balancer (container, volume, files).
    k("delete", "service", APP)
    _wait_lbs(provider, bay.uuid, 0)
    assert not any(lb.name in item for item in leaks(engine, bay.uuid))
    # A service still there when the cluster is deleted goes with it (the last test checks).
    k.apply(service("again"))
    wait_answer(f"http://{wait_ingress(k, 'again')}/hostname")


def test_health_names_a_stopped_worker_and_delete_leaves_nothing(
    server: Server, bay: Bay, engine: Engine
) -> None:
    states = _node_states(bay.k)
    left = next(n for n in states if n != bay.master)
    # Health from the Kubernetes API: a stopped worker is named with its reason.
    _wait_health(server, bay.uuid, "HEALTHY")
    engine.run(["stop", "-t", "1", left])
    reason = _wait_health(server, bay.uuid, "UNHEALTHY")
    assert left in reason, reason

    server.fl("bay-delete", "k8sbay", "--wait")
    assert server.wait(bay.uuid) == {}
    assert leaks(engine, bay.uuid) == []
