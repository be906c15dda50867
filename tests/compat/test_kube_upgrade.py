"""``openstack coe cluster upgrade`` (python-magnumclient 5.0.0, API 1.8) on a Kubernetes
cluster: to a template of the built version the request is accepted as in Magnum and the
upgrade completes; to a template naming another version the client prints the server's
400, which names the versions available.

The cluster is on the ``fake`` provider with the conductor off; the test finishes the
create and the upgrade as the conductor records them (tests/seed_cluster.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import update

import seed_cluster
from flotilla.db import models as m
from flotilla.db.engine import Database
from flotilla.services import operations
from flotilla.settings import Settings

if TYPE_CHECKING:  # conftest.py is pytest's, not a package module: types only
    from conftest import Openstack, Server

pytestmark = pytest.mark.compat

IMAGE = "fedora-atomic-latest"


def _db(data_dir: Path) -> Database:
    return Database(Settings(data_dir=data_dir))


def _finish_pending(data_dir: Path) -> None:
    db = _db(data_dir)
    try:
        with db.session() as s:
            while (op := operations.claim(s, "test", 60, skip_locked=False)) is not None:
                operations.finish(s, op, "test")
    finally:
        db.dispose()


def _template(srv: Server, name: str, **labels: str) -> str:
    with srv.http() as http:
        r = http.post("/v1/clustertemplates", json={"name": name, "coe": "kubernetes", "image_id": IMAGE,
                                                    "labels": labels})  # fmt: skip
        assert r.status_code == 201, r.text
        return str(r.json()["uuid"])


@pytest.fixture(scope="module")
def kube(paused_server: Server) -> dict[str, Any]:
    _template(paused_server, "up-from")
    with paused_server.http() as http:
        r = http.post("/v1/clusters", json={"name": "up", "cluster_template_id": "up-from", "node_count": 1,
                                            "keypair": "testkey"})  # fmt: skip
        assert r.status_code == 202, r.text
        uuid = str(r.json()["uuid"])
    seed_cluster.finish_create(
        paused_server.data_dir, uuid, "https://172.29.8.10:6443", ["172.29.8.10", "172.29.8.11"]
    )
    return {"name": "up", "uuid": uuid}


def _cluster(srv: Server, uuid: str) -> dict[str, Any]:
    with srv.http() as http:
        out: dict[str, Any] = http.get(f"/v1/clusters/{uuid}").json()
        return out


def test_upgrade_to_the_built_version(
    openstack: Openstack, paused_server: Server, kube: dict[str, Any], kube_version: str
) -> None:
    target = _template(paused_server, "up-to", kube_tag=kube_version)
    out = openstack("coe", "cluster", "upgrade", kube["name"], "up-to", on=paused_server).ok()
    assert f"Request to upgrade cluster {kube['name']} has been accepted." in out.stdout, out
    assert _cluster(paused_server, kube["uuid"])["status"] == "UPDATE_IN_PROGRESS"
    _finish_pending(paused_server.data_dir)
    c = _cluster(paused_server, kube["uuid"])
    assert c["status"] == "UPDATE_COMPLETE" and c["cluster_template_id"] == target
    assert c["labels"]["kube_tag"] == kube_version


def test_upgrade_to_another_version_is_refused(
    openstack: Openstack, paused_server: Server, kube: dict[str, Any], kube_version: str
) -> None:
    # A template of an older build (validated when that build was current).
    uuid = _template(paused_server, "up-old")
    db = _db(paused_server.data_dir)
    try:
        with db.session() as s:
            s.execute(
                update(m.ClusterTemplate)
                .where(m.ClusterTemplate.uuid == uuid)
                .values(labels={"kube_tag": "v1.36.4"})
            )
    finally:
        db.dispose()
    before = _cluster(paused_server, kube["uuid"])
    out = openstack("coe", "cluster", "upgrade", kube["name"], "up-old", on=paused_server).failed()
    assert "(HTTP 400)" in out.stderr, out
    # OSC prints the error's title, its first sentence; the versions are in the detail (tests/api)
    assert "kube_tag names a Kubernetes version that is not available here" in out.stderr, out
    after = _cluster(paused_server, kube["uuid"])
    assert (after["status"], after["cluster_template_id"]) == (
        before["status"],
        before["cluster_template_id"],
    )
