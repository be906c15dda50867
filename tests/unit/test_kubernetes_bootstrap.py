"""The kubernetes driver's pure parts: labels, the derived service-account key, the node
files a bootstrap writes (certificates with the right names, kubeconfigs, services), the
supervisor script's subnet arithmetic, template validation and the Ready reading."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import tarfile
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from flotilla.certs import authority
from flotilla.domain import Flavor, TlsMaterial
from flotilla.drivers.base import ClusterSpec, NodeGroupSpec
from flotilla.drivers.coe.kubernetes import KubernetesCoe, addons, bootstrap, kubeapi, labels
from flotilla.drivers.coe.kubernetes.bootstrap import NodePlan
from flotilla.drivers.coe.kubernetes.labels import flannel_settings
from flotilla.errors import Invalid


class Ctx:
    """The certificate half of a StepContext, over a real CA."""

    def __init__(self, spec: ClusterSpec) -> None:
        self.spec = spec
        self.ca, self.key = authority.create_ca("test")

    def server_tls(self, cn: str, dns_names: Sequence[str], ips: Sequence[str]) -> TlsMaterial:
        cert, key = authority.issue_server_cert(
            self.ca, self.key, common_name=cn, dns_names=dns_names, ips=ips
        )
        return TlsMaterial(self.ca, cert, key)

    def client_tls(self) -> TlsMaterial:
        return self.client_cert("flotilla-conductor", "system:masters")

    def client_cert(self, cn: str, organization: str | None = None) -> TlsMaterial:
        cert, key = authority.issue_client_cert(self.ca, self.key, common_name=cn, organization=organization)
        return TlsMaterial(self.ca, cert, key)

    def derived_key(self, purpose: str) -> str:
        return authority.derive_key(self.key, purpose)


def _spec(**kw: object) -> ClusterSpec:
    flavor = Flavor("m1.small", 1, 1024)
    return ClusterSpec(
        uuid="u1", name="k", coe="kubernetes", image_ref="img",
        master=NodeGroupSpec("m", "master", 1, flavor, "img", ("k-master-0",)),
        worker=NodeGroupSpec("w", "worker", 2, flavor, "img", ("k-node-0", "k-node-1")), **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def _subject(pem: bytes) -> tuple[str, list[str]]:
    cert = x509.load_pem_x509_certificate(pem)
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    orgs = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    return str(cn), orgs


def _kubeconfig_user(data: bytes) -> tuple[str, tuple[str, list[str]]]:
    doc = yaml.safe_load(data)
    user = doc["users"][0]["user"]
    return doc["clusters"][0]["cluster"]["server"], _subject(
        base64.b64decode(user["client-certificate-data"])
    )


def test_flannel_labels_defaults_and_refusals() -> None:
    fl = flannel_settings({})
    assert (fl.backend, fl.network_cidr, fl.subnetlen) == ("vxlan", "10.100.0.0/16", 24)
    fl = flannel_settings({"flannel_backend": "host-gw", "flannel_network_cidr": "10.50.0.0/16",
                           "flannel_network_subnetlen": "26"})  # fmt: skip
    assert (fl.backend, fl.network_cidr, fl.subnetlen) == ("host-gw", "10.50.0.0/16", 26)


def test_derived_key_is_stable_per_ca_and_purpose() -> None:
    _, key = authority.create_ca("a")
    _, other = authority.create_ca("b")
    k1 = authority.derive_key(key, "sa")
    assert k1 == authority.derive_key(key, "sa")
    assert k1 != authority.derive_key(key, "other") and k1 != authority.derive_key(other, "sa")
    assert serialization.load_pem_private_key(k1.encode(), password=None).key_size == 256  # type: ignore[union-attr]


def test_master_files_name_every_component_identity() -> None:
    spec = _spec()
    ctx = Ctx(spec)
    master = NodePlan("k-master-0", "master", "172.29.1.10")
    files = bootstrap.address_files(ctx, master, [master], "https://172.29.1.10:6443", flannel_settings({}))  # type: ignore[arg-type]
    pki = bootstrap.PKI
    api = x509.load_pem_x509_certificate(files[f"{pki}/apiserver.crt"])
    san = api.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"kubernetes.default.svc.cluster.local", "kubernetes", "k-master-0"} <= set(
        san.get_values_for_type(x509.DNSName)
    )
    assert {"172.29.1.10", "10.254.0.1", "127.0.0.1"} <= {
        str(i) for i in san.get_values_for_type(x509.IPAddress)
    }
    assert _subject(files[f"{pki}/apiserver-kubelet-client.crt"]) == (
        "kube-apiserver-kubelet-client",
        ["system:masters"],
    )
    server, who = _kubeconfig_user(files[f"{bootstrap.KUBE}/kubelet.kubeconfig"])
    assert server == "https://172.29.1.10:6443" and who == ("system:node:k-master-0", ["system:nodes"])
    assert _kubeconfig_user(files[f"{bootstrap.KUBE}/proxy.kubeconfig"])[1] == ("system:kube-proxy", [])
    server, who = _kubeconfig_user(files[f"{bootstrap.KUBE}/controller-manager.kubeconfig"])
    # The controllers use the controller-manager's own credentials (no service account and
    # token per controller before node-IPAM starts), so it holds all their rights.
    assert server == "https://127.0.0.1:6443" and who == (
        "system:kube-controller-manager",
        ["system:masters"],
    )
    assert (
        b"--use-service-account-credentials=false" in files[f"{bootstrap.SERVICES}/kube-controller-manager"]
    )
    assert _kubeconfig_user(files[f"{bootstrap.KUBE}/scheduler.kubeconfig"])[1][0] == "system:kube-scheduler"
    assert files[f"{pki}/sa.key"] == ctx.derived_key(bootstrap.SA_KEY_PURPOSE).encode()
    services = {p.rsplit("/", 1)[1] for p in files if p.startswith(bootstrap.SERVICES)}
    assert services == {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet",
                        "kube-proxy", "flanneld", "api-gate"}  # fmt: skip
    # A master's gate watches its own API server, which its controller-manager and scheduler
    # use: they start once it is ready (before its RBAC roles exist the controller-manager exits).
    assert b"https://127.0.0.1:6443/readyz" in files[f"{bootstrap.SERVICES}/api-gate"]
    for name in ("kube-controller-manager", "kube-scheduler"):
        assert files[f"{bootstrap.SERVICES}/{name}"].startswith(
            b'n=0; until [ -f "${GATE_DIR:-/run/flotilla}/api-ready" ]'
        )
    cm = files[f"{bootstrap.SERVICES}/kube-controller-manager"].decode()
    assert (
        "--allocate-node-cidrs=true" in cm
        and "--cluster-cidr=10.100.0.0/16" in cm
        and "--node-cidr-mask-size=24" in cm
    )
    kubelet = yaml.safe_load(files[f"{bootstrap.KUBE}/kubelet.yaml"])
    assert kubelet["failCgroupV1"] is False and kubelet["clusterDNS"] == ["10.254.0.10"]
    assert kubelet["registerWithTaints"] == [
        {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
    ]
    proxy = yaml.safe_load(files[f"{bootstrap.KUBE}/proxy.yaml"])
    assert proxy["mode"] == "iptables" and proxy["conntrack"]["maxPerCore"] == 0
    # The marker is written last (paths in sorted order), after everything it announces.
    assert sorted(files)[-1] == bootstrap.MARKER


def test_worker_files_have_no_control_plane() -> None:
    spec = _spec()
    master = NodePlan("k-master-0", "master", "172.29.1.10")
    worker = NodePlan("k-node-0", "worker", "172.29.1.100")
    files = bootstrap.address_files(
        Ctx(spec), worker, [master], "https://172.29.1.10:6443", flannel_settings({})
    )  # type: ignore[arg-type]
    assert not any(p.endswith(("apiserver.key", "sa.key", "etcd.key")) for p in files)
    assert "registerWithTaints" not in yaml.safe_load(files[f"{bootstrap.KUBE}/kubelet.yaml"])
    kubelet_cert = x509.load_pem_x509_certificate(files[f"{bootstrap.PKI}/kubelet.crt"])
    san = kubelet_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "172.29.1.100" in {str(i) for i in san.get_values_for_type(x509.IPAddress)}
    assert b"--node-ip=172.29.1.100" in files[f"{bootstrap.SERVICES}/kubelet"]


def test_tls_disabled_serves_plain_http_with_full_rights() -> None:
    """Magnum's insecure port: magnumclient writes a kubeconfig without credentials for it."""
    master = NodePlan("k-master-0", "master", "172.29.1.10")
    fl = flannel_settings({})
    on = bootstrap.master_services(_spec(), master, [master], fl)
    assert f"{bootstrap.SERVICES}/insecure-port" not in on
    spec = _spec(tls_disabled=True)
    off = bootstrap.master_services(spec, master, [master], fl)
    assert b"TCP-LISTEN:8080" in off[f"{bootstrap.SERVICES}/insecure-port"]
    assert b"--authorization-mode=Node,RBAC" in off[f"{bootstrap.SERVICES}/kube-apiserver"]
    files = bootstrap.address_files(Ctx(spec), master, [master], "https://172.29.1.10:6443", fl)  # type: ignore[arg-type]
    assert _subject(files[f"{bootstrap.PKI}/insecure-port.crt"])[1] == ["system:masters"]
    assert f"{bootstrap.KUBE}/controller-manager.kubeconfig" in files


@pytest.mark.parametrize(
    ("lease", "subnet"), [("10.100.13.1/24", "10.100.13.0/24"), ("10.100.13.17/28", "10.100.13.16/28")]
)
def test_supervisor_turns_flannel_lease_into_cni_subnet(lease: str, subnet: str, tmp_path: Path) -> None:
    script = bootstrap.supervisor_script().decode()
    assert subprocess.run(["sh", "-n"], input=script, text=True, check=False).returncode == 0
    awk = script.split("subnet=$(echo \"$FLANNEL_SUBNET\" | awk -F'[./]' '", 1)[1].split("')", 1)[0]
    out = subprocess.run(
        ["awk", "-F[./]", awk], input=lease + "\n", capture_output=True, text=True, check=True
    )
    assert out.stdout == subnet


def test_static_files_and_containerd_config() -> None:
    files = bootstrap.static_files(_spec(), flannel_settings({"flannel_backend": "udp"}))
    assert b'"Type": "udp"' in files["/etc/kube-flannel/net-conf.json"]
    config = files["/etc/containerd/config.toml"].decode()
    assert "restrict_oom_score_adj = true" in config and bootstrap.PAUSE_IMAGE in config
    assert files[bootstrap.SUPERVISOR].startswith(b"#!/bin/sh")


def test_template_validation(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    coe = KubernetesCoe()
    monkeypatch.setenv(labels.CACHE_ENV, str(tmp_path))
    with pytest.raises(Invalid, match="not built"):
        coe.validate_template({"coe": "kubernetes"})
    (tmp_path / "current" / "bin").mkdir(parents=True)
    (tmp_path / "current" / "bin" / "kube").write_text("")
    (tmp_path / "current" / "VERSIONS").write_text("kubernetes=v1.37.2\ncoredns=v1.12.0\n")
    coe.validate_template(
        {"coe": "kubernetes", "network_driver": "flannel", "labels": {"kube_tag": "v1.37.2"}}
    )
    assert addons.coredns_image() == "flotilla.local/coredns:v1.12.0"
    (tmp_path / "current" / "images").mkdir()
    with tarfile.open(tmp_path / "current" / "images" / "coredns.tar", "w") as t:
        data = json.dumps([{"RepoTags": ["flotilla.local/coredns:1.12.4"]}]).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    assert addons.coredns_image() == "flotilla.local/coredns:1.12.4"
    for bad in ({"network_driver": "docker"}, {"volume_driver": "cinder"}, {"labels": {"kube_tag": "v1.30.0"}},
                {"labels": {"flannel_backend": "weave"}}):  # fmt: skip
        with pytest.raises(Invalid):
            coe.validate_template({"coe": "kubernetes", **bad})


def test_node_ready_reasons() -> None:
    ready = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    assert kubeapi.node_ready(ready) == (True, "Ready")
    cni = {
        "status": {
            "conditions": [{"type": "Ready", "status": "False", "message": "cni plugin not initialized"}]
        }
    }
    assert kubeapi.node_ready(cni) == (False, "NotReady: cni plugin not initialized")
    assert kubeapi.node_ready({})[0] is False


def test_node_container_shape_for_kubernetes_nodes(tmp_path: Path) -> None:
    from flotilla.domain import NodeSpec
    from flotilla.drivers.providers.local.containers import create_body

    spec = NodeSpec(cluster_uuid="u1", name="k-node-0", role="worker", image_ref="img", network="net", cpus=1,
                    memory_mb=1024, command=["sh", "/etc/flotilla/node.sh"], volume_path="/var")  # fmt: skip
    body = create_body(spec, True, "k-node-0-docker", [], tmp_path / "resolv.conf")
    assert "k-node-0-docker:/var" in body["HostConfig"]["Binds"]
    assert body["HostConfig"]["CgroupnsMode"] == "private"
    assert not any("/lib/modules" in b for b in body["HostConfig"]["Binds"])
    plain = create_body(NodeSpec(cluster_uuid="u1", name="d", role="master", image_ref="img", network="net",
                                 cpus=1, memory_mb=1024, command=[]), True, "d-docker", [], tmp_path / "r")  # fmt: skip
    assert "d-docker:/var/lib/docker" in plain["HostConfig"]["Binds"]


FAKE_CURL = """#!/bin/sh
# /readyz: no answer twice, then 500 (serving, post-start hooks running), then 200; a Node:
# without a pod CIDR twice, then with one
n=$(cat "$T/calls" 2>/dev/null || echo 0); echo $((n + 1)) > "$T/calls"
case "$*" in
  */api/v1/nodes/*) [ "$n" -ge 2 ] && echo '{"spec": {"podCIDR": "10.100.1.0/24"}}' || echo '{"spec": {}}' ;;
  *%{http_code}*) if [ "$n" -ge 3 ]; then printf 200; elif [ "$n" -ge 2 ]; then printf 500; else printf 000; exit 7; fi ;;
  *) exit 2 ;;
esac
"""
SERVER = "https://172.29.1.10:6443"


def _fake_bin(tmp_path: Path) -> dict[str, str]:
    """A PATH with the stand-in curl, daemons that record their start (with the curl calls
    made by then) and a sleep whose ``infinity`` returns."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "curl").write_text(FAKE_CURL)
    for prog in ("kubelet", "kube-proxy", "env"):
        (bin_dir / prog).write_text(
            '#!/bin/sh\necho "$(cat "$T/calls" 2>/dev/null || echo 0) $*" > "$T/started"\n'
        )
    (bin_dir / "sleep").write_text('#!/bin/sh\n[ "$1" = infinity ] && exit 0\nexec /bin/sleep "$@"\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "T": str(tmp_path), "GATE_DIR": str(tmp_path / "gate")}


RATE_CURL = """#!/bin/sh
# curl --rate: one status line per poll on stderr: no answer twice, then 500 (serving,
# post-start hooks running) until $T/go exists, then 200; counts its runs.
n=$(cat "$T/runs" 2>/dev/null || echo 0); echo $((n + 1)) > "$T/runs"
case "$*" in *--rate*) ;; *) exit 2 ;; esac
echo 000 >&2; echo 000 >&2
until [ -f "$T/go" ]; do echo 500 >&2; /bin/sleep 0.05; done
while :; do echo 200 >&2 || exit 0; /bin/sleep 0.05; done
"""


def test_api_gate_records_serving_then_ready(tmp_path: Path) -> None:
    """The node's one poller (one curl for every poll) writes api-serving at the first HTTP
    answer (a 500 from a /readyz whose post-start hooks still run) and api-ready at the
    first ok, then stops its curl."""
    env = _fake_bin(tmp_path)
    (tmp_path / "bin" / "curl").write_text(RATE_CURL)
    worker = NodePlan("k-node-0", "worker", "172.29.1.100")
    gate = bootstrap.node_services(worker, SERVER)[f"{bootstrap.SERVICES}/api-gate"]
    assert f"{SERVER}/readyz".encode() in gate
    script = tmp_path / "gate.sh"
    script.write_bytes(gate)
    proc = subprocess.Popen(["sh", str(script)], env=env)
    files = tmp_path / "gate"
    try:
        deadline = time.monotonic() + 10
        while not (files / "api-serving").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (files / "api-serving").exists() and not (files / "api-ready").exists()
        assert proc.poll() is None
        (tmp_path / "go").write_text("")
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
    assert sorted(p.name for p in files.iterdir()) == ["api-gate-running", "api-ready", "api-serving"]
    assert (tmp_path / "runs").read_text().strip() == "1"


@pytest.mark.parametrize("service", ["kubelet", "kube-proxy", "flanneld"])
def test_services_wait_for_the_api_gate(tmp_path: Path, service: str) -> None:
    """The kubelet starts once the API server answers at all (it would otherwise retry its
    registration with a growing delay), kube-proxy once /readyz is ok, flanneld once its Node
    has a pod CIDR (it exits without one): told by the node's gate, without asking the API
    server themselves (flanneld then asks for its Node)."""
    env = _fake_bin(tmp_path)
    worker = NodePlan("k-node-0", "worker", "172.29.1.100")
    script = tmp_path / "service"
    script.write_bytes(bootstrap.node_services(worker, SERVER)[f"{bootstrap.SERVICES}/{service}"])
    proc = subprocess.Popen(["sh", str(script)], env=env)
    try:
        time.sleep(0.5)
        assert proc.poll() is None and not (tmp_path / "started").exists()  # no gate file yet
        (tmp_path / "gate").mkdir()
        (tmp_path / "gate" / "api-serving").write_text("")
        if service != "kubelet":
            time.sleep(0.3)
            assert proc.poll() is None  # serving is not ready
            (tmp_path / "gate" / "api-ready").write_text("")
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    calls, _, argv = (tmp_path / "started").read_text().partition(" ")
    assert calls == ("3" if service == "flanneld" else "0"), calls
    assert argv.startswith("NODE_NAME=k-node-0 flanneld" if service == "flanneld" else "--")


def test_a_service_without_a_gate_asks_the_api_server_itself(tmp_path: Path) -> None:
    """Where no gate runs (a node booted before there was one, its services restarted by a
    CA rotation with these snippets), a waiting service asks the API server every 2 s."""
    env = _fake_bin(tmp_path)
    (tmp_path / "calls").write_text("3")  # the next /readyz answers 200
    worker = NodePlan("k-node-0", "worker", "172.29.1.100")
    script = tmp_path / "service"
    script.write_bytes(bootstrap.node_services(worker, SERVER)[f"{bootstrap.SERVICES}/kube-proxy"])
    subprocess.run(["sh", str(script)], env=env, check=True, timeout=30)
    calls, _, argv = (tmp_path / "started").read_text().partition(" ")
    assert calls == "4" and argv.startswith("--config=")


def test_a_service_leaves_the_asking_to_a_running_gate(tmp_path: Path) -> None:
    """Where the node's gate runs, a waiting service never asks the API server itself
    (each ask is a TLS handshake, on a host whose cores the starting cluster saturates)."""
    env = _fake_bin(tmp_path)
    (tmp_path / "calls").write_text("3")  # the API server would answer 200 at once
    (tmp_path / "gate").mkdir()
    (tmp_path / "gate" / "api-gate-running").write_text("")
    worker = NodePlan("k-node-0", "worker", "172.29.1.100")
    script = tmp_path / "service"
    script.write_bytes(bootstrap.node_services(worker, SERVER)[f"{bootstrap.SERVICES}/kube-proxy"])
    proc = subprocess.Popen(["sh", str(script)], env=env)
    try:
        time.sleep(2.5)  # past the 2 s at which a waiter without a gate asks
        assert proc.poll() is None and (tmp_path / "calls").read_text().strip() == "3"
        (tmp_path / "gate" / "api-ready").write_text("")
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    assert (tmp_path / "started").read_text().startswith("3 --config=")
