"""Cluster actions: scale (node count), delete with a confirmation page, rotate the CA."""

from __future__ import annotations

from fastapi import Request, Response

from flotilla.api import commands
from flotilla.api import microversion as mv
from flotilla.api.deps import runtime
from flotilla.api.fields import Field, parse_body
from flotilla.errors import Forbidden
from flotilla.services import clusters, scaling
from flotilla.services.commands import RotateCa
from flotilla.web import forms
from flotilla.web.clusters_pages import USER_ERRORS, detail_page
from flotilla.web.render import page, redirect
from flotilla.web.routing import new_router
from flotilla.web.session import FormDep, Viewer, ViewerDep

router = new_router()
#: The API's resize body (``POST /v1/clusters/{id}/actions/resize``), node_count only.
SCALE_FIELDS = (Field("node_count", "int", mandatory=True, minimum=0),)


def _require_writer(me: Viewer, action: str) -> None:
    if not me.can_write:
        raise Forbidden(f"Policy doesn't allow cluster:{action} to be performed.")


def _scale_page(
    request: Request, me: Viewer, ident: str, value: str | None, error: str | None, status: int
) -> Response:
    with runtime(request).db.reader() as s:
        c = clusters.get(s, me.ctx, ident, "cluster")
        group = clusters.default_group(s, c, "worker")
        current = group.node_count
        bounds = (group.min_node_count, group.max_node_count)
    return page(
        request, "cluster_scale.html", status, title=f"Scale cluster {c.name}", active="clusters", c=c,
        current=current, bounds=bounds, value=str(current) if value is None else value, error=error,
        error_field="node_count" if error and "node_count" in error else None,
    )  # fmt: skip


@router.get("/clusters/{ident}/scale")
def scale_form(request: Request, me: ViewerDep, ident: str) -> Response:
    _require_writer(me, "resize")
    return _scale_page(request, me, ident, None, None, 200)


@router.post("/clusters/{ident}/scale")
def scale(request: Request, me: ViewerDep, form: FormDep, ident: str) -> Response:
    rt = runtime(request)
    raw = form.get("node_count", "")
    try:
        values = parse_body(
            {"node_count": forms.integer(form, "node_count")}, SCALE_FIELDS, argument="cluster resize"
        )
        with rt.db.session() as s:
            c = clusters.get(s, me.ctx, ident, "cluster", for_update=True)
            op = scaling.resize(
                s, me.ctx, c, commands.resize(values, mv.MAX.minor), coes=rt.coes, limits=rt.limits
            )
            uuid = c.uuid
    except USER_ERRORS as exc:
        return _scale_page(request, me, ident, raw, exc.message, exc.http_status)
    if op is None:
        return redirect(f"/dashboard/clusters/{uuid}?done=noop")
    rt.wake()
    return redirect(f"/dashboard/clusters/{uuid}?done=scaling")


@router.get("/clusters/{ident}/delete")
def confirm_delete(request: Request, me: ViewerDep, ident: str) -> Response:
    _require_writer(me, "delete")
    with runtime(request).db.reader() as s:
        c = clusters.get(s, me.ctx, ident, "cluster")
    return page(
        request, "confirm_delete.html", title=f"Delete cluster {c.name}", active="clusters", kind="cluster",
        name=c.name, uuid=c.uuid, action=f"/dashboard/clusters/{c.uuid}/delete",
        back=f"/dashboard/clusters/{c.uuid}",
        warning="Its nodes, networks and certificates are removed; running containers are lost.",
    )  # fmt: skip


@router.post("/clusters/{ident}/delete")
def delete(request: Request, me: ViewerDep, form: FormDep, ident: str) -> Response:
    rt = runtime(request)
    try:
        with rt.db.session() as s:
            c = clusters.get(s, me.ctx, ident, "cluster", for_update=True)
            clusters.delete(s, me.ctx, c, "cluster")
            uuid = c.uuid
    except USER_ERRORS as exc:
        if isinstance(exc, Forbidden):
            raise
        return detail_page(request, me, ident, error=exc.message, status=exc.http_status)
    rt.wake()
    return redirect(f"/dashboard/clusters/{uuid}?done=deleting")


@router.post("/clusters/{ident}/rotate-ca")
def rotate_ca(request: Request, me: ViewerDep, form: FormDep, ident: str) -> Response:
    rt = runtime(request)
    try:
        with rt.db.session() as s:
            c = clusters.get(s, me.ctx, ident, "cluster", for_update=True)
            clusters.rotate_ca(s, me.ctx, c, RotateCa())
            uuid = c.uuid
    except USER_ERRORS as exc:
        if isinstance(exc, Forbidden):
            raise
        return detail_page(request, me, ident, error=exc.message, status=exc.http_status)
    rt.wake()
    return redirect(f"/dashboard/clusters/{uuid}?done=rotating")
