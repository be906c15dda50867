"""``/v1/clustertemplates`` and ``/v1/baymodels``: one table, two views (reference §6)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from flotilla.api import commands
from flotilla.api import patch as jpatch
from flotilla.api.deps import BodyDep, ContextDep, RuntimeDep, base_url, check_query, int_param
from flotilla.api.fields import Field, check_all, invalid, parse_body
from flotilla.api.v1.render import iso, links, next_link
from flotilla.api.writes import write
from flotilla.db import models as m
from flotilla.errors import Invalid
from flotilla.services import templates
from flotilla.services.templates import View

_STR = "str"
TEMPLATE_FIELDS: tuple[Field, ...] = (
    Field("uuid", "uuid"),
    Field("name", min_len=1),
    Field("coe", mandatory=True),
    Field("image_id", mandatory=True, min_len=1),
    Field("keypair_id", min_len=1),
    Field("flavor_id", min_len=1),
    Field("master_flavor_id", min_len=1),
    Field("dns_nameserver"),
    Field("external_network_id", min_len=1),
    Field("fixed_network", min_len=1),
    Field("fixed_subnet", min_len=1),
    Field("network_driver", min_len=1),
    Field("volume_driver", min_len=1),
    Field("apiserver_port", "int", minimum=1024, maximum=65535),
    Field("docker_volume_size", "int", minimum=1, maximum=2**31 - 1),
    Field("docker_storage_driver", min_len=1),
    Field("cluster_distro"),
    Field("http_proxy", min_len=1),
    Field("https_proxy", min_len=1),
    Field("no_proxy", min_len=1),
    Field("registry_enabled", "bool"),
    Field("insecure_registry", min_len=1),
    Field("labels", "labels"),
    Field("tls_disabled", "bool"),
    Field("public", "bool"),
    Field("hidden", "bool"),
    Field("server_type", min_len=1),
    Field("master_lb_enabled", "bool"),
    Field("floating_ip_enabled", "bool"),
    Field("tags", min_len=0),
    Field("driver", min_len=1),
    Field("project_id", readonly=True),
    Field("user_id", readonly=True),
    Field("links", readonly=True),
    Field("created_at", readonly=True),
    Field("updated_at", readonly=True),
)
BAYMODEL_FIELDS: tuple[Field, ...] = tuple(
    Field("keypair_id", mandatory=True, min_len=1)
    if f.name == "keypair_id"
    else Field("labels", "strlabels")
    if f.name == "labels"
    else f
    for f in TEMPLATE_FIELDS
    if f.name not in ("project_id", "user_id")
)
NON_REMOVABLE = (
    "/coe", "/image_id", "/network_driver", "/external_network_id", "/tls_disabled", "/public", "/hidden",
    "/server_type", "/registry_enabled", "/cluster_distro",
)  # fmt: skip
LIST_PARAMS = {"limit", "marker", "sort_key", "sort_dir", "detail"}


def to_dict(row: m.ClusterTemplate | dict[str, Any], view: View, base: str) -> dict[str, Any]:
    """Every field, with null for unset ones (reference §6.1); ``row`` an ORM object, or the
    row's columns by name (lists), which becomes the answer itself (no copy per row)."""
    coll = "clustertemplates" if view == "clustertemplate" else "baymodels"
    if isinstance(row, dict):
        out = row
        for key in _NOT_SHOWN[view]:
            out.pop(key, None)
    else:
        out = {k: getattr(row, k) for k in _READ}
        if view != "clustertemplate":
            del out["project_id"], out["user_id"]
    if out["labels"] is None:
        out["labels"] = {}
    out["links"] = links(base, coll, out["uuid"])
    out["created_at"] = iso(out["created_at"])
    out["updated_at"] = iso(out["updated_at"])
    return out


_READ = (*templates.WRITABLE, "uuid", "project_id", "user_id", "created_at", "updated_at")
#: Columns of the table that are not in the answer.
_NOT_SHOWN: dict[View, tuple[str, ...]] = {
    "clustertemplate": ("id",),
    "baymodel": ("id", "project_id", "user_id"),
}


def make_router(view: View) -> APIRouter:
    coll = "clustertemplates" if view == "clustertemplate" else "baymodels"
    fields = TEMPLATE_FIELDS if view == "clustertemplate" else BAYMODEL_FIELDS
    router = APIRouter(prefix=f"/v1/{coll}", tags=[coll])

    def _list(request: Request, rt: RuntimeDep, ctx: ContextDep) -> dict[str, Any]:
        params = check_query(request, LIST_PARAMS)
        limit = int_param(params, "limit")
        sort_key, sort_dir = params.get("sort_key", "id"), params.get("sort_dir", "asc")
        base = base_url(request)
        with rt.db.reader() as s:
            page = templates.list_rows(
                s, ctx, view, limit=limit, marker=params.get("marker"), sort_key=sort_key, sort_dir=sort_dir,
                max_limit=rt.settings.max_limit,
            )  # fmt: skip
            items = [to_dict(r, view, base) for r in page.items]
        out: dict[str, Any] = {coll: items}
        if page.full:
            out["next"] = next_link(base, request.url.path, page, items[-1]["uuid"])
        return out

    @router.get("")
    def list_templates(request: Request, rt: RuntimeDep, ctx: ContextDep) -> dict[str, Any]:
        return _list(request, rt, ctx)

    @router.get("/detail")
    def list_detail(request: Request, rt: RuntimeDep, ctx: ContextDep) -> dict[str, Any]:
        return _list(request, rt, ctx)

    @router.get("/{ident}")
    def show(ident: str, request: Request, rt: RuntimeDep, ctx: ContextDep) -> dict[str, Any]:
        check_query(request, set())
        with rt.db.reader() as s:
            return to_dict(templates.get(s, ctx, ident, view), view, base_url(request))

    @router.post("", status_code=201)
    async def create(request: Request, rt: RuntimeDep, ctx: ContextDep, body: BodyDep) -> JSONResponse:
        values = parse_body(
            body, fields, argument="cluster_template" if view == "clustertemplate" else "baymodel"
        )
        cmd = commands.create_template(values, view)
        base = base_url(request)

        def work(s: Session) -> m.ClusterTemplate:
            return templates.create(
                s, ctx, cmd, label_limits=rt.limits.labels, volumes=rt.limits.volumes,
                coes=rt.coes, provider=rt.settings.default_provider,
            )  # fmt: skip

        out = to_dict(await write(rt.db, work), view, base)
        return JSONResponse(out, status_code=201, headers={"Location": f"{base}/v1/{coll}/{out['uuid']}"})

    @router.patch("/{ident}")
    async def update(
        ident: str, request: Request, rt: RuntimeDep, ctx: ContextDep, body: BodyDep
    ) -> dict[str, Any]:
        base = base_url(request)
        ops = jpatch.parse_patch(body, non_removable=NON_REMOVABLE)  # the body first, as Magnum

        def work(s: Session) -> m.ClusterTemplate:
            row = templates.get(s, ctx, ident, view)
            current = templates.writable_view(row)
            patched = jpatch.apply_ops(current, ops, body)
            unknown = set(patched) - set(current)
            if unknown:
                raise Invalid(
                    f"Adding a new attribute /{sorted(unknown)[0]} to the root of the resource is not allowed."
                )
            new = check_all(patched, fields)
            for f in fields:
                if f.mandatory and new.get(f.name) is None:
                    raise invalid(f.name, None, "Mandatory field missing.")
            return templates.update(
                s, ctx, row, commands.update_template(new, view), label_limits=rt.limits.labels,
                coes=rt.coes, provider=rt.settings.default_provider,
            )  # fmt: skip

        return to_dict(await write(rt.db, work), view, base)

    @router.delete("/{ident}", status_code=204)
    async def delete(ident: str, rt: RuntimeDep, ctx: ContextDep) -> Response:
        def work(s: Session) -> None:
            templates.delete(s, ctx, templates.get(s, ctx, ident, view), view)

        await write(rt.db, work)
        return Response(status_code=204)

    return router


clustertemplates_router = make_router("clustertemplate")
baymodels_router = make_router("baymodel")
