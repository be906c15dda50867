"""``/local/v1/clusters/{ident}/images``: images loaded into a cluster's nodes.

``POST`` takes an image archive as the raw body (``docker save`` format, Content-Type
``application/x-tar``, optional ``?name=`` for display), records it for the cluster and
answers 202; the conductor imports it into every node, and into nodes added later.
``GET`` lists the cluster's images with each node's state (``loaded``, ``pending`` or
``failed: reason``), which ``flotilla cluster-image-load`` polls.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from flotilla.api.deps import ContextDep, RuntimeDep
from flotilla.db import models as m
from flotilla.errors import Forbidden, Invalid
from flotilla.services import cluster_images, clusters

router = APIRouter(prefix="/local/v1/clusters", tags=["cluster images"])


def _listing(rt: Any, row: m.Cluster) -> dict[str, Any]:
    """Each image with the state of every node the conductor last saw running (none
    until it has looked: a fresh upload shows no nodes for a moment)."""
    nodes = cluster_images.seen_nodes(rt.settings.data_dir, row.uuid) or []
    out = []
    for img in cluster_images.images(rt.settings.data_dir, row.uuid):
        states = {n: cluster_images.node_state(rt.settings.data_dir, row.uuid, img.sha256, n) for n in nodes}
        out.append({"sha256": img.sha256, "name": img.name, "size": img.size, "nodes": states})
    return {"cluster_uuid": row.uuid, "images": out}


@router.get("/{ident}/images")
def list_images(ident: str, rt: RuntimeDep, ctx: ContextDep) -> dict[str, Any]:
    with rt.db.reader() as s:
        row = clusters.get(s, ctx, ident, "cluster")
    return _listing(rt, row)


@router.post("/{ident}/images", status_code=202)
async def load_image(ident: str, request: Request, rt: RuntimeDep, ctx: ContextDep) -> JSONResponse:
    if not ctx.can_write:  # before reading a body that may be large
        raise Forbidden("Policy doesn't allow cluster:update to be performed.")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cluster_images.MAX_ARCHIVE:
        raise Invalid(
            f"The image archive is {declared} bytes; at most {cluster_images.MAX_ARCHIVE} are accepted."
        )
    data = await request.body()
    name = request.query_params.get("name", "")

    def record() -> dict[str, Any]:
        with rt.db.reader() as s:
            row = clusters.get(s, ctx, ident, "cluster")
            template = clusters.template_of(s, row)
        driver = rt.coes.get(template.coe)
        if driver is None or driver.image_load_argv() is None:
            raise Invalid(f"Loading images into {template.coe} clusters is not supported here.")
        if row.status.startswith("DELETE"):
            raise Invalid(
                f"Cluster {row.name} is being deleted ({row.status}); images cannot be loaded into it."
            )
        img = cluster_images.store(rt.settings.data_dir, row.uuid, data, name)
        listing = _listing(rt, row)
        return {"sha256": img.sha256, "name": img.name, "size": img.size,
                "nodes": next(i["nodes"] for i in listing["images"] if i["sha256"] == img.sha256)}  # fmt: skip

    out = await run_in_threadpool(record)
    rt.wake()
    return JSONResponse(out, status_code=202)
