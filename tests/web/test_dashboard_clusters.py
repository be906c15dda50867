"""Cluster pages through the ASGI app (in-process, SQLite): the forms, live progress, the
failure banner and the client config bundle."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from dashboard_helpers import (
    Conductor,
    Dashboard,
    ctx_for,
    location,
    make_cluster,
    make_template,
)
from fastapi import FastAPI

from flotilla.db import models as m
from flotilla.web.live import snapshot

Dash = Callable[[str], Dashboard]


def test_cluster_lifecycle_through_the_forms(
    dashboard: Dash, image: dict[str, Any], conductor: Conductor, app: FastAPI
) -> None:
    dash = dashboard("p1_member")
    template = make_template(dash)
    assert (
        f'<option value="{template}" selected>'
        in dash.get(f"/dashboard/clusters/new?template={template}").text
    )
    cluster = make_cluster(dash, template)
    page = dash.get(f"/dashboard/clusters/{cluster}?done=created").text
    assert "CREATE_IN_PROGRESS" in page and 'data-running="1"' in page and "waiting for a conductor" in page
    assert "Creation requested" in page and "/dashboard/static/live.js" in page

    op = conductor.progress(cluster, 2, 3, "starting node", "booting")
    with app.state.runtime.db.reader() as s:  # Magnum's status_reason is rendered from the step data
        assert s.get(m.Cluster, 1).status_reason == "2/3 starting node (booting)"  # type: ignore[union-attr]
    status = dash.get(f"/dashboard/clusters/{cluster}/status.json").json()
    assert status["running"] and status["step"] == {"index": 2, "total": 3, "text": "starting node (booting)"}
    assert status["elapsed"] is not None and status["elapsed_text"].endswith(" s")
    listing = dash.get("/dashboard/clusters").text
    assert "2 of 3: starting node (booting)" in listing and 'http-equiv="refresh"' in listing

    conductor.finish(op, api_address="tcp://172.29.0.10:2376", name="web1")
    page = dash.get(f"/dashboard/clusters/{cluster}").text
    assert "CREATE_COMPLETE" in page and 'data-running="0"' in page and "tcp://172.29.0.10:2376" in page
    assert "default-worker" in page and "create completed in" in page
    with dash.client.stream("GET", f"/dashboard/clusters/{cluster}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        text = "".join(stream.iter_text())
    assert "event: done" in text and '"status": "CREATE_COMPLETE"' in text

    scale = dash.post(f"/dashboard/clusters/{cluster}/scale", {"node_count": "2"})
    assert scale.status_code == 400 and "cannot be scaled" in scale.text  # the docker COE's own rule
    bad = dash.post(f"/dashboard/clusters/{cluster}/scale", {"node_count": "-1"})
    assert "Value should be greater or equal to 0" in bad.text

    assert location(dash.post(f"/dashboard/clusters/{cluster}/rotate-ca")).endswith("done=rotating")
    assert "UPDATE_IN_PROGRESS" in dash.get(f"/dashboard/clusters/{cluster}").text
    conductor.run(cluster)

    confirm = dash.get(f"/dashboard/clusters/{cluster}/delete").text
    assert "Delete cluster web1?" in confirm
    assert location(dash.post(f"/dashboard/clusters/{cluster}/delete")).endswith("done=deleting")
    assert "DELETE_IN_PROGRESS" in dash.get(f"/dashboard/clusters/{cluster}").text
    conductor.run(cluster)
    gone = snapshot(app.state.runtime, ctx_for("p1_member"), cluster, known_uuid=cluster)
    assert gone["gone"] and gone["status"] == "DELETE_COMPLETE"
    assert dash.get(f"/dashboard/clusters/{cluster}").status_code == 404
    assert "web1" not in dash.get("/dashboard/clusters").text


def test_cluster_form_shows_the_apis_message(dashboard: Dash, image: dict[str, Any]) -> None:
    dash = dashboard("p1_member")
    template = make_template(dash)
    response = dash.post(
        "/dashboard/clusters/new", {"cluster_template_id": template, "name": "x", "node_count": "3"}
    )
    assert response.status_code == 400
    assert "The docker COE runs a single Docker host" in response.text
    bad_name = dash.post("/dashboard/clusters/new", {"cluster_template_id": template, "name": "1bad"})
    assert "Value should match the pattern" in bad_name.text
    no_template = dash.post("/dashboard/clusters/new", {"name": "x"})
    assert "Invalid input for field/attribute cluster_template_id" in no_template.text
    assert re.search(r'<div class="field invalid">\s*<label for="f-cluster_template_id">', no_template.text)


def test_failed_operation_shows_its_reason_prominently(
    dashboard: Dash, image: dict[str, Any], conductor: Conductor
) -> None:
    dash = dashboard("p1_member")
    cluster = make_cluster(dash, make_template(dash))
    conductor.run(cluster, failed="Step 2/3 (starting node) failed: image flotilla-node is missing")
    page = dash.get(f"/dashboard/clusters/{cluster}").text
    failure = re.search(r'<div class="alert big" role="alert" id="failure">(.*?)</div>', page, re.S)
    assert (
        failure
        and "CREATE_FAILED" in failure.group(1)
        and "image flotilla-node is missing" in failure.group(1)
    )
    assert "UPDATE" not in failure.group(1)


def test_config_bundle_is_a_signed_client_certificate(
    dashboard: Dash, image: dict[str, Any], conductor: Conductor
) -> None:
    dash = dashboard("p1_member")
    cluster = make_cluster(dash, make_template(dash))
    early = dash.post(f"/dashboard/clusters/{cluster}/config.zip")
    assert early.status_code == 400 and "has no API address yet" in early.text
    conductor.run(cluster, api_address="tcp://172.29.0.10:2376", name="web1")
    page = dash.get(f"/dashboard/clusters/{cluster}/config").text
    assert "export DOCKER_HOST=tcp://172.29.0.10:2376" in page
    response = dash.post(f"/dashboard/clusters/{cluster}/config.zip")
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    assert 'filename="web1-config.zip"' in response.headers["content-disposition"]
    files = zipfile.ZipFile(io.BytesIO(response.content))
    assert sorted(files.namelist()) == ["ca.pem", "cert.pem", "env", "key.pem"]
    assert (files.getinfo("key.pem").external_attr >> 16) & 0o777 == 0o600
    env = files.read("env").decode()
    for line in (
        "export DOCKER_HOST=tcp://172.29.0.10:2376",
        "export DOCKER_CERT_PATH=.",
        "export DOCKER_TLS_VERIFY=1",
    ):
        assert line in env.splitlines()
    ca = x509.load_pem_x509_certificate(files.read("ca.pem"))
    cert = x509.load_pem_x509_certificate(files.read("cert.pem"))
    cert.verify_directly_issued_by(ca)
    key = serialization.load_pem_private_key(files.read("key.pem"), password=None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()  # type: ignore[union-attr]
    assert (
        dash.get(f"/dashboard/clusters/{cluster}/ca.pem").text.strip()
        == files.read("ca.pem").decode().strip()
    )


def test_tls_disabled_cluster_has_no_bundle(
    dashboard: Dash, image: dict[str, Any], conductor: Conductor
) -> None:
    dash = dashboard("p1_member")
    cluster = make_cluster(dash, make_template(dash, tls_disabled="on"))
    conductor.run(cluster, api_address="tcp://172.29.0.10:2375", name="web1")
    page = dash.get(f"/dashboard/clusters/{cluster}/config").text
    assert "TLS is disabled" in page and "DOCKER_TLS_VERIFY" not in page and "download-config" not in page
    assert "rotate-ca" not in dash.get(f"/dashboard/clusters/{cluster}").text
    assert dash.post(f"/dashboard/clusters/{cluster}/config.zip").status_code == 400
