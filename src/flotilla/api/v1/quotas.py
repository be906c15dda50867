"""``/v1/quotas``: per-project limits, admin CRUD (reference §11.1)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from flotilla.api.deps import BodyDep, ContextDep, RuntimeDep, base_url, check_query, int_param
from flotilla.api.fields import Field, parse_body, parse_bool
from flotilla.api.v1.render import iso, next_link
from flotilla.db import models as m
from flotilla.services import quotas
from flotilla.services.quotas import DefaultQuota

router = APIRouter(prefix="/v1/quotas", tags=["quotas"])

QUOTA_FIELDS: tuple[Field, ...] = (
    Field("id", "int", readonly=True),
    Field("project_id", min_len=1, max_len=255),
    Field("resource", choices=quotas.RESOURCES),
    Field("hard_limit", "int", minimum=0, maximum=2**31 - 1),
    Field("created_at", readonly=True),
    Field("updated_at", readonly=True),
)


def quota_dict(row: m.Quota | DefaultQuota) -> dict[str, Any]:
    """A stored quota has id and timestamps; the default one has only the three values."""
    if isinstance(row, DefaultQuota):
        return {"project_id": row.project_id, "resource": row.resource, "hard_limit": row.hard_limit}
    return {
        "id": row.id, "project_id": row.project_id, "resource": row.resource, "hard_limit": row.hard_limit,
        "created_at": iso(row.created_at), "updated_at": iso(row.updated_at),
    }  # fmt: skip


@router.get("")
def list_quotas(request: Request, rt: RuntimeDep, ctx: ContextDep) -> dict[str, Any]:
    params = check_query(request, {"limit", "marker", "sort_key", "sort_dir", "all_tenants"})
    all_tenants = parse_bool("all_tenants", params["all_tenants"]) if "all_tenants" in params else False
    with rt.db.reader() as s:
        page = quotas.list_page(
            s, ctx, all_tenants=all_tenants, limit=int_param(params, "limit"), marker=params.get("marker"),
            sort_key=params.get("sort_key", "id"), sort_dir=params.get("sort_dir", "asc"),
            max_limit=rt.settings.max_limit,
        )  # fmt: skip
        items = [quota_dict(r) for r in page.items]
    out: dict[str, Any] = {"quotas": items}
    if page.full:
        out["next"] = next_link(base_url(request), request.url.path, page, str(items[-1]["id"]))
    return out


@router.get("/{project_id}/{resource}")
def show(project_id: str, resource: str, request: Request, rt: RuntimeDep, ctx: ContextDep) -> dict[str, Any]:
    check_query(request, set())
    with rt.db.reader() as s:
        row = quotas.get(s, ctx, project_id, resource, default_limit=rt.settings.max_clusters_per_project)
        return quota_dict(row)


@router.post("", status_code=201)
def create(rt: RuntimeDep, ctx: ContextDep, body: BodyDep) -> JSONResponse:
    values = parse_body(body, QUOTA_FIELDS, argument="quota")
    with rt.db.session() as s:
        row = quotas.create(
            s, ctx, project_id=values.get("project_id"), resource=values.get("resource"),
            hard_limit=values.get("hard_limit"),
        )  # fmt: skip
        out = quota_dict(row)
    return JSONResponse(out, status_code=201)


@router.patch("/{project_id}/{resource}", status_code=202)
def update(project_id: str, resource: str, rt: RuntimeDep, ctx: ContextDep, body: BodyDep) -> JSONResponse:
    # A plain quota object, not a JSON patch: only hard_limit is used (the path names the row).
    values = parse_body(body, QUOTA_FIELDS, argument="quotapatch")
    with rt.db.session() as s:
        row = quotas.update(s, ctx, project_id, resource, hard_limit=values.get("hard_limit"))
        out = quota_dict(row)
    return JSONResponse(out, status_code=202)


@router.delete("/{project_id}/{resource}", status_code=204)
def delete(project_id: str, resource: str, rt: RuntimeDep, ctx: ContextDep) -> Response:
    with rt.db.session() as s:
        quotas.delete(s, ctx, project_id, resource)
    return Response(status_code=204)
