"""``flotilla cluster-upgrade`` (after ``openstack coe cluster upgrade``) against a real server
on the ``fake`` provider with its conductor off: accepted to a template of the built
Kubernetes version (the cluster goes UPDATE_IN_PROGRESS; finished here as a conductor
would, it is UPDATE_COMPLETE on the new template), refused with the server's reason for a
swarm cluster."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cli_helpers import IMAGE, START_TIMEOUT, Server, clean_env

import kube_cache
import seed_cluster
import serving
from flotilla.db.engine import Database
from flotilla.services import operations
from flotilla.settings import Settings


@pytest.fixture(scope="module")
def kube_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return kube_cache.env_for_server(tmp_path_factory.mktemp("kube-cache"))


@pytest.fixture(scope="module")
def userver(tmp_path_factory: pytest.TempPathFactory, kube_env: dict[str, str]) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("flotilla-cli-upgrade")
    data_dir, workdir, home = root / "data", root / "work", root / "home"
    for d in (workdir, home):
        d.mkdir()
    env = clean_env(
        HOME=str(home), FLOTILLA_ENABLED_PROVIDERS='["fake"]', FLOTILLA_DEFAULT_PROVIDER="fake",
        FLOTILLA_CONDUCTOR__ENABLED="false", **kube_env,
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


def _created(srv: Server, name: str, coe: str) -> str:
    with srv.http() as http:
        r = http.post("/v1/clustertemplates", json={"name": f"{name}-tpl", "coe": coe, "image_id": IMAGE})
        assert r.status_code == 201, r.text
        r = http.post(
            "/v1/clusters", json={"name": name, "cluster_template_id": f"{name}-tpl", "node_count": 1}
        )
        assert r.status_code == 202, r.text
        uuid = str(r.json()["uuid"])
    seed_cluster.finish_create(srv.data_dir, uuid, "https://172.29.6.10:6443", ["172.29.6.10", "172.29.6.11"])
    return uuid


def _cluster(srv: Server, uuid: str) -> dict[str, Any]:
    with srv.http() as http:
        out: dict[str, Any] = http.get(f"/v1/clusters/{uuid}").json()
        return out


def test_upgrade_kubernetes_to_the_built_version(userver: Server, kube_env: dict[str, str]) -> None:
    uuid = _created(userver, "k", "kubernetes")
    version = kube_cache.version_of(kube_env)
    with userver.http() as http:
        r = http.post("/v1/clustertemplates", json={"name": "k-next", "coe": "kubernetes", "image_id": IMAGE,
                                                    "labels": {"kube_tag": version}})  # fmt: skip
        assert r.status_code == 201, r.text
        target = r.json()["uuid"]
    out = userver.run("cluster-upgrade", "k", "k-next", "--max-batch-size", "2")
    assert "Request to upgrade cluster k has been accepted." in out.stdout
    assert _cluster(userver, uuid)["status"] == "UPDATE_IN_PROGRESS"
    db = Database(Settings(data_dir=userver.data_dir))
    try:
        with db.session() as s:
            op = operations.claim(s, "test", 60, skip_locked=False)
            assert op is not None and op.kind == "upgrade" and op.cluster_id == uuid
            operations.finish(s, op, "test")
    finally:
        db.dispose()
    c = _cluster(userver, uuid)
    assert c["status"] == "UPDATE_COMPLETE" and c["cluster_template_id"] == target


def test_upgrade_of_a_swarm_cluster_is_refused(userver: Server) -> None:
    uuid = _created(userver, "s", "swarm")
    out = userver.run("cluster-upgrade", "s", "s-tpl", check=False)
    assert out.returncode == 1 and "not supported for swarm clusters" in out.stderr, out
    assert _cluster(userver, uuid)["status"] == "CREATE_COMPLETE"
