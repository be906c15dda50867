"""``/v1/clustertemplates`` and ``/v1/baymodels``: one table, two views (reference §6)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic_core import to_json
from sqlalchemy.orm import Session

from flotilla.api import commands, reads
from flotilla.api import patch as jpatch
from flotilla.api.deps import (
    BodyDep,
    ContextDep,
    Runtime,
    RuntimeDep,
    base_url,
    check_query,
    context,
    int_param,
    json_body,
    runtime,
)
from flotilla.api.fields import Field, check_all, invalid, parse_body
from flotilla.api.v1.render import iso, links, next_link
from flotilla.api.writes import write, write_one
from flotilla.context import RequestContext
from flotilla.db import models as m
from flotilla.errors import Invalid
from flotilla.services import template_inserts, template_reads, templates
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
    "clustertemplate": ("id", "row_version"),
    "baymodel": ("id", "project_id", "user_id", "row_version"),
}


#: A show's keys in the order the answer has them (lists keep the table's column order).
_SHOW_KEYS: dict[View, tuple[str, ...]] = {
    "clustertemplate": _READ,
    "baymodel": tuple(k for k in _READ if k not in _NOT_SHOWN["baymodel"]),
}


async def show_response(request: Request, ident: str, view: View) -> Response:
    """``GET /v1/{clustertemplates,baymodels}/{ident}`` (also served by :mod:`flotilla.api.fastlane`)."""
    rt = runtime(request)
    ctx = await context(request)
    check_query(request, set())
    plan = template_reads.show_plan(rt.db, ctx, ident, view)
    base = base_url(request)

    def render(found: template_reads.Found) -> bytes:
        row = found.row()
        return to_json(to_dict({k: row[k] for k in _SHOW_KEYS[view]}, view, base))

    # Rendered once per state of the row (uuid and row_version; the visibility is the
    # read's WHERE, the answer depends only on the row, the view and the base URL), read
    # narrow after that.
    scope = ("template-show", view, base)
    return reads.json_response(
        await reads.blocking(rt, rt.renders.show, scope, ident, plan, render, short=True)
    )


async def list_response(request: Request, view: View) -> Response:
    """``GET /v1/{clustertemplates,baymodels}[/detail]`` (also served by :mod:`flotilla.api.fastlane`)."""
    rt = runtime(request)
    ctx = await context(request)
    params = check_query(request, LIST_PARAMS)
    limit = int_param(params, "limit")
    base, path = base_url(request), request.url.path
    return reads.json_response(await reads.blocking(rt, _list, rt, ctx, view, params, limit, base, path))


def _list(
    rt: Runtime,
    ctx: RequestContext,
    view: View,
    params: dict[str, str],
    limit: int | None,
    base: str,
    path: str,
) -> bytes:
    coll = "clustertemplates" if view == "clustertemplate" else "baymodels"
    sort_key, sort_dir = params.get("sort_key", "id"), params.get("sort_dir", "asc")
    variant, plan = template_reads.list_plan(
        rt.db, ctx, view, limit=limit, marker=params.get("marker"), sort_key=sort_key, sort_dir=sort_dir,
        max_limit=rt.settings.max_limit,
    )  # fmt: skip

    def render(raw: Any) -> bytes:
        return to_json(to_dict(template_reads.row_dict(rt.db, variant, raw), view, base))

    # A row renders the same for every variant that lists it: the variant is not in the scope.
    rows, page, last = rt.renders.page(("template", view, base), plan, render)
    next_url = next_link(base, path, page, last) if page.full and last is not None else None
    return reads.page_json(coll, rows, next_url)


async def create_response(request: Request, view: View) -> Response:
    """``POST /v1/{clustertemplates,baymodels}`` (also served by :mod:`flotilla.api.writelane`).

    Authentication, then the body, as the route's dependencies ran before. The write runs
    on a DBAPI connection (:mod:`flotilla.services.template_inserts`); the few creates that
    need the ORM lookups run ``templates.create`` in a session instead.
    """
    rt = runtime(request)
    ctx = await context(request)
    body = await json_body(request)
    coll = "clustertemplates" if view == "clustertemplate" else "baymodels"
    values = parse_body(
        body,
        TEMPLATE_FIELDS if view == "clustertemplate" else BAYMODEL_FIELDS,
        argument="cluster_template" if view == "clustertemplate" else "baymodel",
    )
    cmd = commands.create_template(values, view)
    base = base_url(request)
    limits, volumes, coes, provider = (
        rt.limits.labels,
        rt.limits.volumes,
        rt.coes,
        rt.settings.default_provider,
    )
    dialect = rt.db.engine.dialect

    def insert(conn: Any) -> dict[str, Any]:
        return template_inserts.insert_template(
            conn, dialect, ctx, cmd, label_limits=limits, volumes=volumes, coes=coes, provider=provider
        )

    def work(s: Session) -> m.ClusterTemplate:
        return templates.create(
            s, ctx, cmd, label_limits=limits, volumes=volumes, coes=coes, provider=provider
        )

    try:
        full = await write_one(rt.db, insert, rt.write_threads)  # a catalog check, then one INSERT
        out = to_dict({k: full[k] for k in _SHOW_KEYS[view]}, view, base)
    except template_inserts.NeedsSession:
        out = to_dict(await write(rt.db, work), view, base)
    # pydantic-core's JSON: the bytes JSONResponse gives these values (compact, UTF-8).
    return Response(
        to_json(out), status_code=201, headers={"Location": f"{base}/v1/{coll}/{out['uuid']}"},
        media_type="application/json",
    )  # fmt: skip


def make_router(view: View) -> APIRouter:
    coll = "clustertemplates" if view == "clustertemplate" else "baymodels"
    fields = TEMPLATE_FIELDS if view == "clustertemplate" else BAYMODEL_FIELDS
    router = APIRouter(prefix=f"/v1/{coll}", tags=[coll])

    @router.get("", response_model=dict[str, Any])
    async def list_templates(request: Request) -> Response:
        return await list_response(request, view)

    @router.get("/detail", response_model=dict[str, Any])
    async def list_detail(request: Request) -> Response:
        return await list_response(request, view)

    @router.get("/{ident}", response_model=dict[str, Any])
    async def show(ident: str, request: Request) -> Response:
        return await show_response(request, ident, view)

    @router.post("", status_code=201)
    async def create(request: Request) -> Response:
        return await create_response(request, view)

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
