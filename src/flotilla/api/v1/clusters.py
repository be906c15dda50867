"""``/v1/clusters`` and ``/v1/bays``: one table, two views (reference §7)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic_core import to_json
from sqlalchemy.orm import Session

from flotilla.api import commands, reads
from flotilla.api import patch as jpatch
from flotilla.api.deps import (
    BodyDep,
    ContextDep,
    Runtime,
    RuntimeDep,
    VersionDep,
    base_url,
    check_query,
    context,
    int_param,
    runtime,
)
from flotilla.api.fields import Field, coerce, parse_body
from flotilla.api.v1.render import iso, links, next_link
from flotilla.api.writes import write
from flotilla.context import RequestContext
from flotilla.db import models as m
from flotilla.errors import Invalid, NotAcceptable
from flotilla.lifecycle import FAILED
from flotilla.services import cluster_reads, clusters, scaling, upgrades
from flotilla.services.cluster_reads import GROUP_COLUMNS, Shown
from flotilla.services.commands import ClusterView
from flotilla.services.pagination import Page

INT32 = 2**31 - 1
#: create_timeout is in minutes; a week is plenty and keeps deadlines representable.
MAX_TIMEOUT = 7 * 24 * 60
COMMON_FIELDS: tuple[Field, ...] = (
    Field("uuid"),
    Field("name", min_len=1, max_len=242),
    Field("node_count", "int", minimum=0, maximum=INT32),
    Field("master_count", "int", minimum=1, maximum=INT32),
    Field("docker_volume_size", "int", minimum=1, maximum=INT32),
    Field("master_flavor_id", min_len=1),
    Field("flavor_id", min_len=1),
    Field("fixed_network", min_len=1),
    Field("fixed_subnet", min_len=1),
    Field("floating_ip_enabled", "bool"),
    Field("master_lb_enabled", "bool"),
    Field("discovery_url"),
    *(Field(k, readonly=True) for k in (
        "status", "status_reason", "api_address", "node_addresses", "master_addresses", "stack_id",
        "coe_version", "container_version", "links", "created_at", "updated_at", "project_id", "user_id",
        "faults", "health_status", "health_status_reason",
    )),
)  # fmt: skip
CLUSTER_FIELDS = (
    *COMMON_FIELDS,
    Field("cluster_template_id", mandatory=True, min_len=1),
    Field("keypair", min_len=1),
    Field("labels", "labels"),
    Field("merge_labels", "bool"),
    Field("create_timeout", "int", minimum=0, maximum=MAX_TIMEOUT),
)
BAY_FIELDS = (
    *COMMON_FIELDS,
    Field("baymodel_id", mandatory=True, min_len=1),
    Field("labels", "strlabels"),
    Field("bay_create_timeout", "int", minimum=0, maximum=MAX_TIMEOUT),
)
INTERNAL = (
    "/api_address", "/node_addresses", "/master_addresses", "/stack_id", "/ca_cert_ref", "/magnum_cert_ref",
    "/trust_id", "/trustee_user_name", "/trustee_password", "/trustee_user_id", "/etcd_ca_cert_ref",
    "/front_proxy_ca_cert_ref",
)  # fmt: skip
LIST_KEYS = {
    "cluster": (
        "uuid", "name", "cluster_template_id", "keypair", "docker_volume_size", "labels", "node_count",
        "master_count", "status", "master_flavor_id", "flavor_id", "create_timeout", "stack_id", "health_status",
        "merge_labels", "links",
    ),
    "bay": (
        "uuid", "name", "baymodel_id", "docker_volume_size", "labels", "master_flavor_id", "flavor_id",
        "node_count", "status", "bay_create_timeout", "master_count", "stack_id", "floating_ip_enabled", "links",
    ),
}  # fmt: skip
BAY_SHOW_KEYS = (
    "uuid", "name", "baymodel_id", "node_count", "master_count", "docker_volume_size", "labels", "master_flavor_id",
    "flavor_id", "bay_create_timeout", "stack_id", "status", "status_reason", "discovery_url", "api_address",
    "coe_version", "container_version", "node_addresses", "master_addresses", "fixed_network", "fixed_subnet",
    "floating_ip_enabled", "master_lb_enabled", "created_at", "updated_at", "links",
)  # fmt: skip


def full_dict(session: Session, row: m.Cluster, view: ClusterView, base: str) -> dict[str, Any]:
    """The show/detail representation (reference §7.1/§7.7) of an ORM row; its nodegroups
    and template are looked up here."""
    groups = [{k: getattr(g, k) for k in GROUP_COLUMNS} for g in clusters.nodegroups(session, row)]
    shown = Shown(
        cluster={k: getattr(row, k) for k in _CLUSTER_COLUMNS}, groups=groups,
        template_labels=clusters.template_of(session, row).labels or {},
    )  # fmt: skip
    return shown_dict(shown, view, base)


_CLUSTER_COLUMNS = tuple(c.key for c in m.Cluster.__table__.columns if not m.internal(c))


def shown_dict(shown: Shown, view: ClusterView, base: str) -> dict[str, Any]:
    """The show/detail representation (reference §7.1/§7.7) of a cluster read as columns."""
    coll = "clusters" if view == "cluster" else "bays"
    row, groups = shown.cluster, shown.groups
    masters = sum(g["node_count"] for g in groups if g["role"] == "master")
    workers = sum(g["node_count"] for g in groups if g["role"] != "master")
    out: dict[str, Any] = {
        "uuid": row["uuid"], "name": row["name"], "cluster_template_id": row["cluster_template_id"],
        "keypair": row["keypair"], "node_count": workers, "master_count": masters,
        "docker_volume_size": row["docker_volume_size"], "labels": row["labels"] or {},
        "master_flavor_id": row["master_flavor_id"], "flavor_id": row["flavor_id"],
        "create_timeout": row["create_timeout"], "stack_id": row["stack_id"], "status": row["status"],
        "status_reason": row["status_reason"], "discovery_url": row["discovery_url"], "api_address": row["api_address"],
        "coe_version": row["coe_version"], "container_version": row["container_version"],
        "node_addresses": row["node_addresses"] or [], "master_addresses": row["master_addresses"] or [],
        "fixed_network": row["fixed_network"], "fixed_subnet": row["fixed_subnet"],
        "floating_ip_enabled": row["floating_ip_enabled"], "master_lb_enabled": row["master_lb_enabled"],
        "health_status": row["health_status"], "health_status_reason": row["health_status_reason"] or {},
        "project_id": row["project_id"], "user_id": row["user_id"], "merge_labels": False,
        "labels_overridden": {}, "labels_added": {}, "labels_skipped": {},
        "created_at": iso(row["created_at"]), "updated_at": iso(row["updated_at"]),
        "links": links(base, coll, row["uuid"]),
    }  # fmt: skip
    tl = {k: str(v) for k, v in shown.template_labels.items()}
    cl = {k: str(v) for k, v in (row["labels"] or {}).items()}
    out["labels_overridden"] = {k: tl[k] for k in cl if k in tl and tl[k] != cl[k]}
    out["labels_added"] = {k: cl[k] for k in cl if k not in tl}
    out["labels_skipped"] = {k: tl[k] for k in tl if k not in cl}
    failed = row["status"] in _FAILED
    if view == "bay":
        out["baymodel_id"] = out.pop("cluster_template_id")
        out["bay_create_timeout"] = out.pop("create_timeout")
        out = {k: out[k] for k in BAY_SHOW_KEYS}
        if failed:
            out["bay_faults"] = _faults(groups, row)
    elif failed:
        out["faults"] = _faults(groups, row)
    return out


_FAILED = frozenset(s.value for s in FAILED)


def _faults(groups: list[dict[str, Any]], row: dict[str, Any]) -> dict[str, str]:
    reason = row["status_reason"] or "failed"
    return {g["name"]: reason for g in groups if g["is_default"]} or {"cluster": reason}


def summary_dict(
    row: m.Cluster | dict[str, Any], view: ClusterView, base: str, counts: tuple[int, int]
) -> dict[str, Any]:
    """The list representation (reference §7.2 / §7.7)."""
    masters, workers = counts
    r = row if isinstance(row, dict) else {k: getattr(row, k) for k in _SUMMARY_COLUMNS}
    coll = "clusters" if view == "cluster" else "bays"
    full: dict[str, Any] = {
        "uuid": r["uuid"], "name": r["name"], "cluster_template_id": r["cluster_template_id"],
        "baymodel_id": r["cluster_template_id"], "keypair": r["keypair"],
        "docker_volume_size": r["docker_volume_size"], "labels": r["labels"] or {}, "node_count": workers,
        "master_count": masters, "status": r["status"], "master_flavor_id": r["master_flavor_id"],
        "flavor_id": r["flavor_id"], "create_timeout": r["create_timeout"], "bay_create_timeout": r["create_timeout"],
        "stack_id": r["stack_id"], "health_status": r["health_status"], "merge_labels": False,
        "floating_ip_enabled": r["floating_ip_enabled"], "links": links(base, coll, r["uuid"]),
    }  # fmt: skip
    return {k: full[k] for k in LIST_KEYS[view]}


_SUMMARY_COLUMNS = (
    "uuid", "name", "cluster_template_id", "keypair", "docker_volume_size", "labels", "status", "master_flavor_id",
    "flavor_id", "create_timeout", "stack_id", "health_status", "floating_ip_enabled",
)  # fmt: skip


LIST_PARAMS = {"limit", "marker", "sort_key", "sort_dir"}


async def show_response(request: Request, ident: str, view: ClusterView) -> Response:
    """``GET /v1/{clusters,bays}/{ident}`` (also served by :mod:`flotilla.api.fastlane`)."""
    rt = runtime(request)
    ctx = await context(request)
    plan = cluster_reads.show_plan(rt.db, ctx, ident, view)
    base = base_url(request)

    def render(found: cluster_reads.Found) -> bytes:
        return to_json(shown_dict(found.shown(), view, base))

    # Rendered once per state of the cluster (its key: uuid and versions), read narrow after that.
    scope = ("cluster-show", view, base)
    return reads.json_response(
        await reads.blocking(rt, rt.renders.show, scope, ident, plan, render, short=True)
    )


async def list_response(request: Request, view: ClusterView, *, detail: bool) -> Response:
    """``GET /v1/{clusters,bays}[/detail]`` (also served by :mod:`flotilla.api.fastlane`)."""
    rt = runtime(request)
    ctx = await context(request)
    params = check_query(request, LIST_PARAMS)
    limit = int_param(params, "limit")
    base, path = base_url(request), request.url.path
    return reads.json_response(
        await reads.blocking(rt, _list, rt, ctx, view, detail, params, limit, base, path)
    )


def _list(
    rt: Runtime, ctx: RequestContext, view: ClusterView, detail: bool, params: dict[str, str], limit: int | None,
    base: str, path: str,
) -> bytes | dict[str, Any]:  # fmt: skip
    coll = "clusters" if view == "cluster" else "bays"
    marker = params.get("marker")
    sort_key, sort_dir = params.get("sort_key", "id"), params.get("sort_dir", "asc")
    if detail:
        with rt.db.reader() as s:
            page: Page[Any] = clusters.list_page(
                s, ctx, view, limit=limit, marker=marker, sort_key=sort_key, sort_dir=sort_dir,
                max_limit=rt.settings.max_limit,
            )  # fmt: skip
            items = [full_dict(s, r, view, base) for r in page.items]
        out: dict[str, Any] = {coll: items}
        if page.full:
            out["next"] = next_link(base, path, page, items[-1]["uuid"])
        return out
    # the summary: column rows with the node counts, one statement
    variant, plan = cluster_reads.list_plan(
        rt.db, ctx, view, limit=limit, marker=marker, sort_key=sort_key, sort_dir=sort_dir,
        max_limit=rt.settings.max_limit,
    )  # fmt: skip

    def render(raw: Any) -> bytes:
        r = cluster_reads.row_dict(rt.db, variant, raw)
        return to_json(summary_dict(r, view, base, (r["masters_total"], r["workers_total"])))

    rows, summary, last = rt.renders.page(("cluster", view, base), plan, render)
    next_url = next_link(base, path, summary, last) if summary.full and last is not None else None
    return reads.page_json(coll, rows, next_url)


def make_router(view: ClusterView) -> APIRouter:
    coll = "clusters" if view == "cluster" else "bays"
    fields = CLUSTER_FIELDS if view == "cluster" else BAY_FIELDS
    router = APIRouter(prefix=f"/v1/{coll}", tags=[coll])

    @router.get("", response_model=dict[str, Any])
    async def list_clusters(request: Request) -> Response:
        return await list_response(request, view, detail=False)

    @router.get("/detail", response_model=dict[str, Any])
    async def list_detail(request: Request) -> Response:
        return await list_response(request, view, detail=True)

    @router.get("/{ident}", response_model=dict[str, Any])
    async def show(ident: str, request: Request) -> Response:
        return await show_response(request, ident, view)

    @router.post("", status_code=202)
    async def create(
        request: Request, rt: RuntimeDep, ctx: ContextDep, version: VersionDep, body: BodyDep
    ) -> JSONResponse:
        values = parse_body(
            body, fields, argument="cluster" if view == "cluster" else "bay", ignore=("uuid",)
        )
        cmd = commands.create_cluster(values, view, version.minor)
        base = base_url(request)

        def work(s: Session) -> dict[str, Any]:
            row = clusters.create(
                s, ctx, cmd, coes=rt.coes, limits=rt.limits, default_provider=rt.settings.default_provider
            )
            return (
                full_dict(s, row, view, base) if view == "bay" and version.minor < 2 else {"uuid": row.uuid}
            )

        out = await write(rt.db, work)
        rt.wake()
        if view == "bay" and version.minor < 2:
            return JSONResponse(out, status_code=201, headers={"Location": f"{base}/v1/bays/{out['uuid']}"})
        return JSONResponse(out, status_code=202)

    @router.patch("/{ident}")
    async def update(
        ident: str, request: Request, rt: RuntimeDep, ctx: ContextDep, version: VersionDep, body: BodyDep
    ) -> JSONResponse:
        params = check_query(request, {"rollback"} if version.minor >= 3 else set())
        _ = params
        base = base_url(request)
        ops = jpatch.parse_patch(body, internal=INTERNAL)  # the body first, as Magnum

        def work(s: Session) -> dict[str, Any]:
            row = clusters.get(s, ctx, ident, view, for_update=True)
            clusters.check_write(ctx, row, "update")
            current = full_dict(s, row, view, base)
            patched = jpatch.apply_ops(current, ops, body)
            changed = sorted(k for k in set(current) | set(patched) if current.get(k) != patched.get(k))
            allowed = {"node_count"} if view == "bay" else set(scaling.MUTABLE)
            bad = [k for k in changed if k not in allowed]
            if bad:
                raise Invalid(f"cannot change cluster property(ies) {', '.join(bad)}.")
            node_count = None
            if "node_count" in changed:
                node_count = coerce(
                    Field("node_count", "int", minimum=0, nullable=False), patched["node_count"]
                )
            cmd = commands.update_cluster(patched, changed, view, version.minor, node_count=node_count)
            scaling.update(s, ctx, row, cmd, coes=rt.coes, limits=rt.limits)
            return (
                full_dict(s, row, view, base) if view == "bay" and version.minor < 2 else {"uuid": row.uuid}
            )

        out = await write(rt.db, work)
        rt.wake()
        return JSONResponse(out, status_code=200 if view == "bay" and version.minor < 2 else 202)

    @router.delete("/{ident}", status_code=204)
    async def delete(ident: str, rt: RuntimeDep, ctx: ContextDep) -> Response:
        def work(s: Session) -> None:
            clusters.delete(s, ctx, clusters.get(s, ctx, ident, view, for_update=True), view)

        await write(rt.db, work)
        rt.wake()
        return Response(status_code=204)

    if view == "cluster":

        @router.post("/{ident}/actions/resize", status_code=202)
        def resize(
            ident: str, rt: RuntimeDep, ctx: ContextDep, version: VersionDep, body: BodyDep
        ) -> JSONResponse:
            if version.minor < 7:
                raise NotAcceptable("")
            v = parse_body(
                body,
                (Field("node_count", "int", mandatory=True, minimum=0, maximum=INT32), Field("nodes_to_remove", "strlist"),
                 Field("nodegroup", min_len=1)),
                argument="cluster resize",
            )  # fmt: skip
            cmd = commands.resize(v, version.minor)
            with rt.db.session() as s:
                row = clusters.get(s, ctx, ident, view, for_update=True)
                scaling.resize(s, ctx, row, cmd, coes=rt.coes, limits=rt.limits)
                uuid = row.uuid
            rt.wake()
            return JSONResponse({"uuid": uuid}, status_code=202)

        @router.post("/{ident}/actions/upgrade", status_code=202)
        def upgrade(
            ident: str, rt: RuntimeDep, ctx: ContextDep, version: VersionDep, body: BodyDep
        ) -> JSONResponse:
            if version.minor < 7:
                raise NotAcceptable("")
            if version.minor < 8:
                raise Invalid("Cluster upgrade is not supported in the provided microversion.")
            v = parse_body(
                body,
                (Field("cluster_template", mandatory=True, min_len=1, max_len=255),
                 Field("max_batch_size", "int", minimum=1, maximum=INT32), Field("nodegroup", min_len=1, max_len=255)),
                argument="cluster upgrade",
            )  # fmt: skip
            cmd = commands.upgrade(v)
            with rt.db.session() as s:
                row = clusters.get(
                    s, ctx, ident, view, for_update=True
                )  # 404 for other projects, like every action
                upgrades.upgrade(s, ctx, row, cmd, coes=rt.coes)
                uuid = row.uuid
            rt.wake()
            return JSONResponse({"uuid": uuid}, status_code=202)

        @router.get("/{ident}/events")
        def cluster_events(ident: str, rt: RuntimeDep, ctx: ContextDep) -> dict[str, Any]:
            with rt.db.reader() as s:
                row = clusters.get(s, ctx, ident, view)
                return {
                    "events": [
                        {"status": e.status, "reason": e.reason, "created_at": iso(e.created_at)}
                        for e in clusters.events(s, row.uuid)
                    ]
                }

    return router


clusters_router = make_router("cluster")
bays_router = make_router("bay")
