"""Cluster pages: list (status, health, progress), detail (live), create form."""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response

from flotilla.api import commands
from flotilla.api import microversion as mv
from flotilla.api.deps import runtime
from flotilla.api.fields import parse_body
from flotilla.api.v1.clusters import CLUSTER_FIELDS
from flotilla.db import models as m
from flotilla.errors import Conflict, Forbidden, Invalid, NotFound
from flotilla.services import catalog, clusters, operations, templates
from flotilla.web import forms
from flotilla.web.live import describe
from flotilla.web.render import is_running, labels_text, page, redirect
from flotilla.web.routing import new_router
from flotilla.web.session import FormDep, Viewer, ViewerDep

router = new_router()
PAGE_SIZE = 50
USER_ERRORS = (Invalid, NotFound, Forbidden, Conflict)
NOTICES = {
    "created": "Creation requested: the steps show below as they run.",
    "scaling": "Scaling requested: the steps show below as they run.",
    "noop": "The node count did not change; nothing to do.",
    "rotating": "CA rotation requested: new certificates are being installed.",
    "deleting": "Deletion requested.",
    "deleted": "The cluster was deleted.",
}


def _counts(groups: list[m.NodeGroup]) -> tuple[int, int]:
    masters = sum(g.node_count for g in groups if g.role == "master")
    return masters, sum(g.node_count for g in groups if g.role != "master")


@router.get("/clusters")
def cluster_list(
    request: Request, me: ViewerDep, marker: str | None = None, done: str | None = None
) -> Response:
    rt = runtime(request)
    with rt.db.reader() as s:
        result = clusters.list_page(
            s, me.ctx, "cluster", limit=PAGE_SIZE, marker=marker, sort_key="id", sort_dir="asc",
            max_limit=rt.settings.max_limit,
        )  # fmt: skip
        # Three queries for the page, not four per row (they were nine tenths of its time):
        # node counts and template names for every row at once; events and the step only
        # for a running cluster, the one row whose progress and elapsed time are shown.
        counts = clusters.node_counts(s, [c.uuid for c in result.items])
        names = clusters.template_names(s, result.items)
        rows: list[dict[str, Any]] = []
        for c in result.items:
            masters, nodes = counts.get(c.uuid, (0, 0))
            if is_running(c.status):
                live = describe(c, clusters.events(s, c.uuid, limit=20), operations.progress_of(s, c.uuid))
            else:
                live = describe(c, (), None)
            rows.append({"c": c, "live": live, "masters": masters, "nodes": nodes, "template": names[c.uuid]})
        next_marker = result.items[-1].uuid if result.full else None
    return page(
        request, "clusters_list.html", title="Clusters", active="clusters", rows=rows,
        next_marker=next_marker, notice=NOTICES.get(done or ""),
        refresh=any(r["live"]["running"] for r in rows),
    )  # fmt: skip


def detail_page(
    request: Request, me: Viewer, ident: str, *, error: str | None = None, status: int = 200,
    notice: str | None = None,
) -> Response:  # fmt: skip
    """The cluster's page; actions that fail render it again with their error on top."""
    with runtime(request).db.reader() as s:
        c = clusters.get(s, me.ctx, ident, "cluster")
        template = clusters.template_of(s, c)
        groups = clusters.nodegroups(s, c)
        history = clusters.events(s, c.uuid)
        live = describe(c, history, operations.progress_of(s, c.uuid))
    masters, nodes = _counts(groups)
    overview = [
        ("UUID", c.uuid), ("Template", None), ("API address", c.api_address or "-"),
        ("Master addresses", ", ".join(c.master_addresses or []) or "-"),
        ("Node addresses", ", ".join(c.node_addresses or []) or "-"),
        ("Masters / nodes", f"{masters} / {nodes}"), ("Keypair", c.keypair or "-"),
        ("Master flavor / flavor", f"{c.master_flavor_id or '-'} / {c.flavor_id or '-'}"),
        ("Docker volume size", f"{c.docker_volume_size} GB" if c.docker_volume_size else "-"),
        ("Labels", labels_text(c.labels) or "-"), ("Create timeout", f"{c.create_timeout} min"),
        ("COE version", c.coe_version or "-"), ("Provider", c.provider), ("Project", c.project_id),
    ]  # fmt: skip
    return page(
        request, "cluster_detail.html", status, title=f"Cluster {c.name}", active="clusters", c=c,
        template=template, groups=groups, history=history, live=live, overview=overview, error=error,
        notice=notice, tls=not template.tls_disabled,
    )  # fmt: skip


def _form_page(
    request: Request, me: Viewer, values: dict[str, str], error: str | None, status: int
) -> Response:
    rt = runtime(request)
    with rt.db.reader() as s:
        found = templates.choices(s, me.ctx, "clustertemplate", max_limit=rt.settings.max_limit)
        choices = {
            "templates": [(uuid, f"{name} ({coe})") for uuid, name, coe in found],
            "keypairs": [k.name for k in catalog.list_keypairs(s, me.ctx)],
        }
    return page(
        request, "cluster_form.html", status, title="Create a cluster", active="clusters", values=values,
        error=error, error_field=forms.error_field(error, values) if error else None, choices=choices,
    )  # fmt: skip


@router.get("/clusters/new")
def cluster_new(request: Request, me: ViewerDep, template: str | None = None) -> Response:
    if not me.can_write:
        raise Forbidden("Policy doesn't allow cluster:create to be performed.")
    values = {"cluster_template_id": template or "", "master_count": "1", "node_count": "1",
              "create_timeout": "60"}  # fmt: skip
    return _form_page(request, me, values, None, 200)


@router.post("/clusters/new")
def cluster_create(request: Request, me: ViewerDep, form: FormDep) -> Response:
    rt = runtime(request)
    try:
        values = parse_body(forms.cluster_body(form), CLUSTER_FIELDS, argument="cluster", ignore=("uuid",))
        with rt.db.session() as s:
            cmd = commands.create_cluster(values, "cluster", mv.MAX.minor)
            uuid = clusters.create(
                s, me.ctx, cmd, coes=rt.coes, limits=rt.limits, default_provider=rt.settings.default_provider
            ).uuid
    except USER_ERRORS as exc:
        return _form_page(request, me, form, exc.message, exc.http_status)
    rt.wake()
    return redirect(f"/dashboard/clusters/{uuid}?done=created")


@router.get("/clusters/{ident}")
def cluster_detail(request: Request, me: ViewerDep, ident: str, done: str | None = None) -> Response:
    try:
        return detail_page(request, me, ident, notice=NOTICES.get(done or ""))
    except NotFound:
        if done == "deleting":  # the delete finished before the page was asked for
            return redirect("/dashboard/clusters?done=deleted")
        raise
