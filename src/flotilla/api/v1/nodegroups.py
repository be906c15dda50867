"""``/v1/clusters/{id}/nodegroups`` (≥ 1.9): the default master and worker groups."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from flotilla.api.deps import ContextDep, RuntimeDep, VersionDep, base_url, check_query
from flotilla.api.v1.render import iso
from flotilla.db import models as m
from flotilla.errors import NotAcceptable, NotFound
from flotilla.services import clusters

router = APIRouter(prefix="/v1/clusters/{cluster_ident}/nodegroups", tags=["nodegroups"])
SUMMARY = ("uuid", "name", "flavor_id", "node_count", "role", "is_default", "image_id", "status", "stack_id")


def ng_dict(ng: m.NodeGroup, base: str) -> dict[str, Any]:
    return {
        "uuid": ng.uuid, "id": ng.id, "name": ng.name, "cluster_id": ng.cluster_id, "project_id": ng.project_id,
        "role": ng.role, "node_count": ng.node_count, "min_node_count": ng.min_node_count,
        "max_node_count": ng.max_node_count, "flavor_id": ng.flavor_id, "image_id": ng.image_id,
        "docker_volume_size": ng.docker_volume_size, "labels": ng.labels or {}, "merge_labels": False,
        "labels_overridden": {}, "labels_added": {}, "labels_skipped": {}, "is_default": ng.is_default,
        "node_addresses": ng.node_addresses or [], "stack_id": ng.stack_id, "status": ng.status,
        "status_reason": ng.status_reason, "version": ng.version, "created_at": iso(ng.created_at),
        "updated_at": iso(ng.updated_at),
        "links": [
            {"href": f"{base}/v1/clusters/{ng.cluster_id}/nodegroups/{ng.uuid}", "rel": "self"},
            {"href": f"{base}/clusters/{ng.cluster_id}/nodegroups/{ng.uuid}", "rel": "bookmark"},
        ],
    }  # fmt: skip


def _check(version: Any) -> None:
    if version.minor < 9:
        raise NotAcceptable("")


@router.get("")
def list_groups(
    cluster_ident: str, request: Request, rt: RuntimeDep, ctx: ContextDep, version: VersionDep
) -> dict[str, Any]:
    _check(version)
    params = check_query(request, {"role", "limit", "marker", "sort_key", "sort_dir"})
    with rt.db.reader() as s:
        cluster = clusters.get(s, ctx, cluster_ident, "cluster")
        groups = clusters.nodegroups(s, cluster)
    role = params.get("role")
    items = []
    for ng in groups:
        if role and ng.role != role:
            continue
        d = {k: getattr(ng, k) for k in SUMMARY}
        d.update({"min_node_count": 0, "max_node_count": None, "merge_labels": False})
        items.append(d)
    return {"nodegroups": items}


@router.get("/{ident}")
def show_group(
    cluster_ident: str, ident: str, request: Request, rt: RuntimeDep, ctx: ContextDep, version: VersionDep
) -> dict[str, Any]:
    _check(version)
    with rt.db.reader() as s:
        cluster = clusters.get(s, ctx, cluster_ident, "cluster")
        for ng in clusters.nodegroups(s, cluster):
            if ident in (ng.uuid, ng.name, str(ng.id)):
                return ng_dict(ng, base_url(request))
    raise NotFound(f"Nodegroup {ident} could not be found.")
