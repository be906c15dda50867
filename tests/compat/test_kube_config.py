"""The real clients' ``cluster-config`` for a Kubernetes cluster.

Both clients write the kubeconfig themselves from the template's ``coe``: they make a
key and a CSR (``CN=admin, O=system:masters``), get it signed through
``POST /v1/certificates``, fetch the CA, write files and print ``export KUBECONFIG=…``.

* ``openstack coe cluster config`` (python-magnumclient 5.0.0) inlines the CA and the
  client certificate in ``DIR/config`` (user ``admin``, context ``default``).
* ``magnum cluster-config`` / ``bay-config`` 2.17 write ``ca.pem``, ``cert.pem`` and
  ``key.pem`` but a kubeconfig **without** credentials (the 2.17 shell never passes the
  certificates to its kubeconfig writer, and names the user ``<cluster>'`` with a stray
  quote): kubectl then needs ``--certificate-authority``/``--client-certificate``/
  ``--client-key`` pointing at the .pem files. That is the client's doing; the server's part
  (signing, the CA, ``api_address``) is the same for both and is checked here.

The cluster is on the ``fake`` provider with the conductor off; the test finishes its
create as the conductor records it (tests/seed_cluster.py).
"""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID

import seed_cluster

if TYPE_CHECKING:  # conftest.py is pytest's, not a package module: types only
    from conftest import Magnum, Openstack, Server

pytestmark = pytest.mark.compat

IMAGE = "fedora-atomic-latest"
API = "https://172.29.7.10:6443"
KUBECTL = Path(sys.executable).with_name("kubectl")


def _kube_cluster(srv: Server, name: str) -> str:
    with srv.http() as http:
        r = http.post(
            "/v1/clustertemplates", json={"name": f"{name}-tpl", "coe": "kubernetes", "image_id": IMAGE}
        )
        assert r.status_code == 201, r.text
        r = http.post(
            "/v1/clusters",
            json={"name": name, "cluster_template_id": f"{name}-tpl", "node_count": 2, "keypair": "testkey"},
        )
        assert r.status_code == 202, r.text
        uuid = str(r.json()["uuid"])
    seed_cluster.finish_create(srv.data_dir, uuid, API, ["172.29.7.10", "172.29.7.11", "172.29.7.12"])
    return uuid


@pytest.fixture(scope="module")
def kube(paused_server: Server) -> dict[str, Any]:
    name = "k8s-compat"
    uuid = _kube_cluster(paused_server, name)
    with paused_server.http() as http:
        ca = http.get(f"/v1/certificates/{uuid}").json()["pem"]
    return {"name": name, "uuid": uuid, "ca": x509.load_pem_x509_certificate(ca.encode())}


def _check_admin_cert(cert: x509.Certificate, ca: x509.Certificate) -> None:
    cert.verify_directly_issued_by(ca)
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == [
        "system:masters"
    ]
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == ["admin"]


def test_openstack_coe_cluster_config(
    openstack: Openstack, paused_server: Server, kube: dict[str, Any], tmp_path: Path
) -> None:
    out = openstack("coe", "cluster", "config", kube["name"], "--dir", str(tmp_path), on=paused_server).ok()
    assert out.stdout.strip().splitlines() == [f"export KUBECONFIG={tmp_path}/config"]
    doc = yaml.safe_load((tmp_path / "config").read_text())
    assert doc["clusters"][0]["cluster"]["server"] == API
    assert doc["current-context"] == "default" and doc["users"][0]["name"] == "admin"
    ca = x509.load_pem_x509_certificate(
        base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"])
    )
    assert ca == kube["ca"]
    cert = x509.load_pem_x509_certificate(
        base64.b64decode(doc["users"][0]["user"]["client-certificate-data"])
    )
    _check_admin_cert(cert, kube["ca"])
    if KUBECTL.exists():  # kubectl accepts what the client wrote
        view = subprocess.run(
            [str(KUBECTL), "config", "view", "--minify", "--kubeconfig", str(tmp_path / "config"), "-o",
             "jsonpath={.clusters[0].cluster.server}"],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        assert view.stdout == API


@pytest.mark.parametrize("command", ["cluster-config", "bay-config"])
def test_magnum_217_cluster_config(
    magnum: Magnum, paused_server: Server, kube: dict[str, Any], tmp_path: Path, command: str
) -> None:
    out = magnum(command, kube["name"], "--dir", str(tmp_path), on=paused_server).ok()
    assert [line for line in out.lines if line.strip()] == [f"export KUBECONFIG={tmp_path}/config"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.pem", "cert.pem", "config", "key.pem"]
    assert x509.load_pem_x509_certificate((tmp_path / "ca.pem").read_bytes()) == kube["ca"]
    _check_admin_cert(x509.load_pem_x509_certificate((tmp_path / "cert.pem").read_bytes()), kube["ca"])
    doc = yaml.safe_load((tmp_path / "config").read_text())
    assert doc["clusters"][0]["cluster"] == {"server": API}  # 2.17: no credentials in the kubeconfig
    assert doc["current-context"] == kube["name"]
