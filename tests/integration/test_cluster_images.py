"""``cluster-image-load`` through the server: the API records an image for a cluster and
the conductor's image sync imports it into every node, and into nodes added later, with
the COE driver's command (on the fake provider, whose exec log shows what ran where).

Clusters are swarm-mode ones created by the real OpRunner on a FakeProvider; the
Kubernetes case places its nodes on the fake provider directly (its create steps are the
driver helper's), to check the containerd import command and the ``k8s.io`` namespace.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

import kube_cache
from flotilla.cli import image_archive
from flotilla.conductor.images import ImageSync
from flotilla.conductor.providers import ProviderPool
from flotilla.conductor.runner import Context, OpRunner
from flotilla.db import models as m
from flotilla.domain import ExecResult, NodeInfo, NodeSpec
from flotilla.drivers.coe.kubernetes import IMAGE_LOAD_ARGV, labels
from flotilla.drivers.coe.kubernetes.steps import BOOT_IMAGE_LOAD_ARGV
from flotilla.drivers.providers.fake import FakeProvider
from flotilla.services import cluster_images, operations, specs
from flotilla.settings import ConductorSettings, Settings

Auth = Callable[..., dict[str, str]]


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path, database_url=db_url, auth_strategy="token", enabled_providers=["fake"],
        default_provider="fake", conductor=ConductorSettings(enabled=False),
    )  # fmt: skip


@pytest.fixture
def h(auth: Auth, register_image: Callable[..., Any]) -> dict[str, str]:
    register_image("flotilla-node", "debian")
    return auth("p1_member", "latest")


@pytest.fixture
def fake(app: FastAPI) -> tuple[FakeProvider, ProviderPool]:
    provider = FakeProvider()
    pool = ProviderPool(app.state.runtime.settings)
    pool._providers["fake"] = provider
    return provider, pool


def _rootfs() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = b"hello\n"
        info = tarfile.TarInfo("etc/hello")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _run_ops(app: FastAPI, pool: ProviderPool) -> None:
    rt = app.state.runtime
    while True:
        with rt.db.session() as s:
            op = operations.claim(s, "test/w0", 30, skip_locked=False)
        if op is None:
            return
        OpRunner(rt.db, rt.box, rt.coes, pool, "test/w0", 30).run(op)


def _sync(app: FastAPI, pool: ProviderPool) -> int:
    rt = app.state.runtime
    return ImageSync(rt.settings.data_dir, rt.db, rt.coes, pool).cycle()


def _swarm(api: TestClient, h: dict[str, str], app: FastAPI, pool: ProviderPool, node_count: int) -> str:
    r = api.post(
        "/v1/clustertemplates",
        json={"coe": "swarm-mode", "image_id": "flotilla-node", "name": "t"},
        headers=h,
    )
    assert r.status_code == 201, r.text
    r = api.post(
        "/v1/clusters", json={"cluster_template_id": "t", "name": "c", "node_count": node_count}, headers=h
    )
    assert r.status_code == 202, r.text
    _run_ops(app, pool)
    uuid: str = r.json()["uuid"]
    assert api.get(f"/v1/clusters/{uuid}", headers=h).json()["status"] == "CREATE_COMPLETE"
    return uuid


def _states(api: TestClient, h: dict[str, str], uuid: str) -> dict[str, str]:
    r = api.get(f"/local/v1/clusters/{uuid}/images", headers=h)
    assert r.status_code == 200, r.text
    (img,) = r.json()["images"]
    states: dict[str, str] = img["nodes"]
    return states


def _post(api: TestClient, h: dict[str, str], uuid: str, data: bytes, name: str = "busybox:local") -> Any:
    headers = {**h, "Content-Type": "application/x-tar"}
    return api.post(f"/local/v1/clusters/{uuid}/images", content=data, params={"name": name}, headers=headers)


def test_loaded_into_every_node_and_into_nodes_added_later(
    app: FastAPI, api: TestClient, h: dict[str, str], fake: tuple[FakeProvider, ProviderPool]
) -> None:
    provider, pool = fake
    uuid = _swarm(api, h, app, pool, node_count=1)
    archive = image_archive.from_rootfs(_rootfs(), "busybox:local", cmd=["sh"])
    r = _post(api, h, uuid, archive)
    assert r.status_code == 202, r.text
    assert r.json()["nodes"] == {}  # the conductor has not looked at the nodes yet
    assert _sync(app, pool) == 2
    loads = [(node, argv) for node, argv, stdin in provider.exec_log if stdin == archive]
    assert sorted(argv for _, argv in loads) == [("docker", "load")] * 2
    states = _states(api, h, uuid)
    assert set(states.values()) == {"loaded"} and sorted(states) == sorted(
        n for n in provider.nodes if uuid[:8] in n
    )
    assert _sync(app, pool) == 0  # nothing left to do
    # a second upload of the same bytes is the same image
    assert _post(api, h, uuid, archive).json()["sha256"] == r.json()["sha256"]

    r = api.post(f"/v1/clusters/{uuid}/actions/resize", json={"node_count": 2}, headers=h)
    assert r.status_code == 202, r.text
    _run_ops(app, pool)
    (new,) = {n for n in provider.nodes if uuid[:8] in n} - set(_states(api, h, uuid))
    assert _sync(app, pool) == 1
    assert [node for node, _, stdin in provider.exec_log if stdin == archive][-1] == new
    states = _states(api, h, uuid)
    assert set(states.values()) == {"loaded"} and new in states and len(states) == 3

    api.delete(f"/v1/clusters/{uuid}", headers=h)
    _run_ops(app, pool)
    _sync(app, pool)  # the records of a deleted cluster go
    assert list(cluster_images.clusters(app.state.runtime.settings.data_dir)) == []


def test_failures_are_retried_then_reported(
    app: FastAPI, api: TestClient, h: dict[str, str], fake: tuple[FakeProvider, ProviderPool]
) -> None:
    provider, pool = fake
    uuid = _swarm(api, h, app, pool, node_count=1)

    def handler(node: NodeInfo, argv: Any, stdin: bytes | None) -> ExecResult:
        if stdin and node.role == "worker":
            return ExecResult(1, "", "Error processing tar file(exit status 1): unexpected EOF\n")
        return ExecResult(0, "", "")

    provider.exec_handler = handler
    assert _post(api, h, uuid, image_archive.from_rootfs(_rootfs(), "x:1")).status_code == 202
    assert _sync(app, pool) == 1
    worker = next(n for n, s in _states(api, h, uuid).items() if s != "loaded")
    assert (
        _states(api, h, uuid)[worker]
        == "pending (attempt 1 failed: Error processing tar file(exit status 1): unexpected EOF)"
    )
    for _ in range(4):
        _sync(app, pool)
    assert _states(api, h, uuid)[worker] == "failed: Error processing tar file(exit status 1): unexpected EOF"
    tries = [n for n, _, stdin in provider.exec_log if stdin and n == worker]
    assert len(tries) == cluster_images.MAX_ATTEMPTS


def test_kubernetes_nodes_import_into_containerd(
    app: FastAPI, api: TestClient, h: dict[str, str], fake: tuple[FakeProvider, ProviderPool],
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:  # fmt: skip
    monkeypatch.setenv(labels.CACHE_ENV, str(kube_cache.make(tmp_path / "kube-cache")))
    provider, pool = fake
    r = api.post(
        "/v1/clustertemplates",
        json={"coe": "kubernetes", "image_id": "flotilla-node", "name": "k"},
        headers=h,
    )
    assert r.status_code == 201, r.text
    r = api.post("/v1/clusters", json={"cluster_template_id": "k", "name": "k8s", "node_count": 1}, headers=h)
    assert r.status_code == 202, r.text
    uuid = r.json()["uuid"]
    rt = app.state.runtime
    with rt.db.session() as s:  # finish the create as the conductor records it
        op = operations.claim(s, "test/w0", 30, skip_locked=False)
        assert op is not None
        operations.finish(s, op, "test/w0")
    for name, role in (("k8s-master-0", "master"), ("k8s-node-0", "worker"), ("k8s-lb", "lb")):
        provider.ensure_node(
            NodeSpec(uuid, name, role, "flotilla-node", "net", 1, 512, ["/sbin/init"])  # type: ignore[arg-type]
        )
    archive = image_archive.from_rootfs(_rootfs(), "app:v1")
    assert _post(api, h, uuid, archive, "app:v1").status_code == 202
    assert _sync(app, pool) == 2
    assert sorted((n, argv) for n, argv, stdin in provider.exec_log if stdin == archive) == [
        ("k8s-master-0", IMAGE_LOAD_ARGV), ("k8s-node-0", IMAGE_LOAD_ARGV),
    ]  # fmt: skip
    assert IMAGE_LOAD_ARGV[:3] == ("ctr", "-n", "k8s.io")

    # A worker a scale boots gets the images from its start step (before the kubelet runs),
    # through the step context, and the image sync then leaves it alone.
    booting = provider.ensure_node(
        NodeSpec(uuid, "k8s-node-1", "worker", "flotilla-node", "net", 1, 512, ["/sbin/init"])  # type: ignore[arg-type]
    )
    runner = OpRunner(
        rt.db,
        rt.box,
        rt.coes,
        pool,
        "test/w0",
        30,
        images=ImageSync(rt.settings.data_dir, rt.db, rt.coes, pool),
    )
    with rt.db.reader() as s:
        cluster = s.scalars(select(m.Cluster).where(m.Cluster.uuid == uuid)).one()
        spec = specs.build(s, cluster, None)
    ctx = Context(rt.db, rt.box, spec, provider, runner)
    assert ctx.load_images(booting, BOOT_IMAGE_LOAD_ARGV) == 1
    assert ctx.load_images(booting, BOOT_IMAGE_LOAD_ARGV) == 0  # recorded: not imported twice
    assert [(n, argv) for n, argv, stdin in provider.exec_log if stdin == archive][-1] == (
        "k8s-node-1", tuple(BOOT_IMAGE_LOAD_ARGV),
    )  # fmt: skip
    assert _sync(app, pool) == 0 and _states(api, h, uuid)["k8s-node-1"] == "loaded"
    assert "ctr -n k8s.io images import --all-platforms -" in BOOT_IMAGE_LOAD_ARGV[-1]


def test_bad_uploads(
    app: FastAPI, api: TestClient, h: dict[str, str], auth: Auth, fake: tuple[FakeProvider, ProviderPool]
) -> None:
    _, pool = fake
    uuid = _swarm(api, h, app, pool, node_count=0)
    for body, words in ((b"", "empty"), (b"not a tar" * 100, "not a tar archive")):
        r = _post(api, h, uuid, body)
        assert r.status_code == 400 and words in r.json()["errors"][0]["detail"], r.text
    r = _post(api, auth("p1_reader", "latest"), uuid, image_archive.from_rootfs(_rootfs(), "x:1"))
    assert r.status_code == 403, r.text
    r = _post(api, auth("p2_member", "latest"), uuid, image_archive.from_rootfs(_rootfs(), "x:1"))
    assert r.status_code == 404, r.text
    r = _post(api, h, "no-such-cluster", image_archive.from_rootfs(_rootfs(), "x:1"))
    assert r.status_code == 404, r.text


def test_archive_from_rootfs_is_a_docker_save_archive() -> None:
    rootfs = _rootfs()
    data = image_archive.from_rootfs(rootfs, "registry.local:5000/team/app", cmd=["sh"])
    assert image_archive.is_docker_archive(data) and not image_archive.is_docker_archive(rootfs)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        (manifest,) = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        assert manifest["RepoTags"] == ["registry.local:5000/team/app:latest"]
        config = json.loads(tar.extractfile(manifest["Config"]).read())  # type: ignore[union-attr]
        layer = tar.extractfile(manifest["Layers"][0]).read()  # type: ignore[union-attr]
    assert layer == rootfs
    assert config["rootfs"]["diff_ids"] == [f"sha256:{hashlib.sha256(rootfs).hexdigest()}"]
    assert config["os"] == "linux" and config["config"]["Cmd"] == ["sh"]
    assert (
        manifest["Config"]
        == hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest() + ".json"
    )


def test_archives_may_exceed_the_document_body_limit(
    app: FastAPI, api: TestClient, h: dict[str, str], fake: tuple[FakeProvider, ProviderPool]
) -> None:
    """Image archives are bigger than any API document: the edge's body limit (1 MiB by
    default) does not apply to them, only ``cluster_images.MAX_ARCHIVE`` does."""
    _, pool = fake
    uuid = _swarm(api, h, app, pool, node_count=0)
    assert app.state.runtime.settings.max_request_body_bytes < 2 * 1024 * 1024
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        blob = bytes(range(256)) * (8 * 1024)  # 2 MiB
        info = tarfile.TarInfo("blob")
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))
    archive = image_archive.from_rootfs(buf.getvalue(), "big:1")
    r = _post(api, h, uuid, archive, "big:1")
    assert r.status_code == 202, r.text
    assert r.json()["size"] == len(archive)
    r = api.post(
        f"/v1/clusters/{uuid}/actions/resize",
        content=archive,
        headers={**h, "Content-Type": "application/json"},
    )
    assert r.status_code == 413, r.text
