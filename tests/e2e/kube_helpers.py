"""Helpers shared by the Kubernetes e2e tests (and bench/k8s_lb.py): kubectl with a
kubeconfig signed the way magnumclient's cluster-config does it, node and pod waits, a
busybox Deployment, and loading the workload image into every node's containerd."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from flotilla_server import Server

from flotilla.certs.authority import generate_csr
from flotilla.drivers.providers.local import Engine, LocalProvider

KUBECTL = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")


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
    """The guide's images come from a registry; here busybox:local goes into each node's containerd
    (masters and workers: a load balancer node runs haproxy, no containerd)."""
    data = subprocess.run(["docker", "-H", engine.host, "save", workload_image], capture_output=True,
                          check=True).stdout  # fmt: skip
    for node in provider.list_nodes(uuid):
        if node.role not in ("master", "worker"):
            continue
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


def _wait_health(server: Server, uuid: str, wanted: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        c = server.cluster(uuid)
        if c.get("health_status") == wanted:
            return str(c.get("health_status_reason"))
        assert time.monotonic() < deadline, (c.get("health_status"), c.get("health_status_reason"))
        time.sleep(0.5)
