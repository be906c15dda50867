"""The dashboard's client-config bundle for a Kubernetes cluster: a kubeconfig, not pem files.

The cluster row is finished by the test ``Conductor`` (tests/web/dashboard_helpers.py), as for
the docker COEs; Kubernetes templates validate against a stand-in build cache (tests/kube_cache.py).
"""

from __future__ import annotations

import base64
import io
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID
from dashboard_helpers import TEMPLATE_FORM, Conductor, Dashboard, make_cluster, make_template

import kube_cache
from flotilla.drivers.coe.kubernetes import labels

API = "https://172.29.0.10:6443"
Dash = Callable[[str], Dashboard]


@pytest.fixture(autouse=True)
def fake_kube_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(labels.CACHE_ENV, str(kube_cache.make(tmp_path / "kube-cache")))


def test_kubernetes_bundle_is_a_kubeconfig(
    dashboard: Dash, image: dict[str, Any], conductor: Conductor
) -> None:
    dash = dashboard("p1_member")
    template = make_template(dash, name="k8s-tpl", coe="kubernetes", network_driver="flannel")
    cluster = make_cluster(dash, template, name="k1")
    conductor.run(cluster, api_address=API, name="k1")
    page = dash.get(f"/dashboard/clusters/{cluster}/config").text
    assert "export KUBECONFIG=./config" in page and "kubectl get nodes" in page and "DOCKER_" not in page
    response = dash.post(f"/dashboard/clusters/{cluster}/config.zip")
    assert response.status_code == 200, response.text
    files = zipfile.ZipFile(io.BytesIO(response.content))
    assert sorted(files.namelist()) == ["config", "env"]
    assert (files.getinfo("config").external_attr >> 16) & 0o777 == 0o600
    assert "export KUBECONFIG=./config" in files.read("env").decode().splitlines()
    doc = yaml.safe_load(files.read("config"))
    assert doc["clusters"][0]["cluster"]["server"] == API and doc["current-context"] == "default"
    ca = x509.load_pem_x509_certificate(
        base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"])
    )
    cert = x509.load_pem_x509_certificate(
        base64.b64decode(doc["users"][0]["user"]["client-certificate-data"])
    )
    cert.verify_directly_issued_by(ca)
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == [
        "system:masters"
    ]
    assert (
        dash.get(f"/dashboard/clusters/{cluster}/ca.pem").text.strip().encode()
        == base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"]).strip()
    )


def test_kubernetes_template_form_shows_the_drivers_message(
    dashboard: Dash, image: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    dash = dashboard("p1_member")
    form = {**TEMPLATE_FORM, "coe": "kubernetes", "network_driver": "flannel", "labels": "kube_tag=v1.20.0"}
    response = dash.post("/dashboard/templates/new", form)
    assert response.status_code == 400 and "this Flotilla runs Kubernetes" in response.text
    monkeypatch.setenv(labels.CACHE_ENV, str(tmp_path / "nothing"))
    response = dash.post("/dashboard/templates/new", {**form, "labels": ""})
    assert response.status_code == 400 and "scripts/build-kube.sh" in response.text
