"""Cluster template pages: list, detail, create form, delete with confirmation."""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response
from sqlalchemy.orm import Session

from flotilla.api import commands
from flotilla.api.deps import runtime
from flotilla.api.fields import parse_body
from flotilla.api.v1.clustertemplates import TEMPLATE_FIELDS
from flotilla.db import models as m
from flotilla.errors import Forbidden, Invalid, NotFound
from flotilla.services import catalog, template_rules, templates
from flotilla.web import forms
from flotilla.web.render import page, redirect
from flotilla.web.routing import new_router
from flotilla.web.session import FormDep, Viewer, ViewerDep

router = new_router()
PAGE_SIZE = 50
VIEW: templates.View = "clustertemplate"
NOTICES = {"deleted": "The cluster template was deleted."}

#: (label, attribute) pairs of the detail page, in the guide's order.
DETAIL_ROWS: tuple[tuple[str, str], ...] = (
    ("UUID", "uuid"), ("COE", "coe"), ("Image", "image_id"), ("Distro", "cluster_distro"),
    ("Keypair", "keypair_id"), ("External network", "external_network_id"),
    ("Fixed network", "fixed_network"), ("Fixed subnet", "fixed_subnet"),
    ("Network driver", "network_driver"), ("Volume driver", "volume_driver"),
    ("DNS nameserver", "dns_nameserver"), ("Flavor", "flavor_id"), ("Master flavor", "master_flavor_id"),
    ("Docker volume size (GB)", "docker_volume_size"), ("Docker storage driver", "docker_storage_driver"),
    ("HTTP proxy", "http_proxy"), ("HTTPS proxy", "https_proxy"), ("No proxy", "no_proxy"),
    ("TLS disabled", "tls_disabled"), ("Public", "public"), ("Hidden", "hidden"),
    ("Registry enabled", "registry_enabled"), ("Server type", "server_type"),
    ("Master load balancer", "master_lb_enabled"), ("Floating IPs", "floating_ip_enabled"),
    ("Project", "project_id"), ("Owner", "user_id"),
)  # fmt: skip


def _require_writer(me: Viewer, action: str) -> None:
    if not me.can_write:
        raise Forbidden(f"Policy doesn't allow clustertemplate:{action} to be performed.")


@router.get("/templates")
def template_list(
    request: Request, me: ViewerDep, marker: str | None = None, done: str | None = None
) -> Response:
    rt = runtime(request)
    with rt.db.reader() as s:
        result = templates.list_page(
            s, me.ctx, VIEW, limit=PAGE_SIZE, marker=marker, sort_key="id", sort_dir="asc",
            max_limit=rt.settings.max_limit,
        )  # fmt: skip
        rows = list(result.items)
        next_marker = rows[-1].uuid if result.full else None
    return page(
        request, "templates_list.html", title="Cluster templates", active="templates", rows=rows,
        next_marker=next_marker, notice=NOTICES.get(done or ""),
    )  # fmt: skip


def _choices(s: Session, me: Viewer, enabled: list[str]) -> dict[str, Any]:
    networks = catalog.list_networks(s)
    by_coe = template_rules.coe_choices()
    coes = sorted(by_coe, key=lambda c: (c not in enabled, c))
    return {
        "images": [(i.name, f"{i.name} ({i.os_distro or 'no os_distro'})") for i in catalog.list_images(s)],
        "flavors": [(f.name, f"{f.name} ({f.vcpus:g} vCPU, {f.ram_mb} MB)") for f in catalog.list_flavors(s)],
        "external_networks": [n.name for n in networks if n.external],
        "networks": [n.name for n in networks],
        "keypairs": [k.name for k in catalog.list_keypairs(s, me.ctx)],
        "coes": [(c, c if c in enabled else f"{c} (no driver enabled here)") for c in coes],
        "network_drivers": sorted({d for c in by_coe.values() for d in c.network_drivers}),
        "volume_drivers": sorted({d for c in by_coe.values() for d in c.volume_drivers}),
        "storage_drivers": list(template_rules.STORAGE_DRIVER_MIN_GB),
        "server_types": list(template_rules.SERVER_TYPES),
    }


def _form_page(
    request: Request, me: Viewer, values: dict[str, str], error: str | None, status: int
) -> Response:
    rt = runtime(request)
    enabled = rt.coes.coes()
    with rt.db.reader() as s:
        choices = _choices(s, me, enabled)
    return page(
        request, "template_form.html", status, title="Create a cluster template", active="templates",
        values=values, error=error, error_field=forms.error_field(error, values) if error else None,
        choices=choices, enabled_coes=enabled,
    )  # fmt: skip


@router.get("/templates/new")
def template_new(request: Request, me: ViewerDep) -> Response:
    _require_writer(me, "create")
    enabled = runtime(request).coes.coes()
    values = {"coe": enabled[0] if enabled else "", "server_type": "vm"}
    return _form_page(request, me, values, None, 200)


@router.post("/templates/new")
def template_create(request: Request, me: ViewerDep, form: FormDep) -> Response:
    rt = runtime(request)
    try:
        body = forms.template_body(form, admin=me.is_admin)
        values = parse_body(body, TEMPLATE_FIELDS, argument="cluster_template")
        with rt.db.session() as s:
            uuid = templates.create(
                s, me.ctx, commands.create_template(values, VIEW), label_limits=rt.limits.labels, volumes=rt.limits.volumes,
                coes=rt.coes, provider=rt.settings.default_provider,
            ).uuid  # fmt: skip
    except (Invalid, NotFound) as exc:
        return _form_page(request, me, form, exc.message, 400)
    return redirect(f"/dashboard/templates/{uuid}")


def _load(request: Request, me: Viewer, ident: str) -> tuple[m.ClusterTemplate, bool]:
    with runtime(request).db.reader() as s:
        row = templates.get(s, me.ctx, ident, VIEW)
        return row, templates.in_use(s, row)


@router.get("/templates/{ident}")
def template_detail(request: Request, me: ViewerDep, ident: str) -> Response:
    row, used = _load(request, me, ident)
    rows = [(label, getattr(row, attr)) for label, attr in DETAIL_ROWS]
    return page(
        request, "template_detail.html", title=f"Cluster template {row.name}", active="templates", t=row,
        rows=rows, in_use=used,
    )  # fmt: skip


@router.get("/templates/{ident}/delete")
def template_confirm_delete(request: Request, me: ViewerDep, ident: str) -> Response:
    _require_writer(me, "delete")
    row, used = _load(request, me, ident)
    return page(
        request, "confirm_delete.html", title=f"Delete cluster template {row.name}", active="templates",
        kind="cluster template", name=row.name, uuid=row.uuid,
        action=f"/dashboard/templates/{row.uuid}/delete", back=f"/dashboard/templates/{row.uuid}",
        warning="Clusters still use this template: delete them first." if used else None,
    )  # fmt: skip


@router.post("/templates/{ident}/delete")
def template_delete(request: Request, me: ViewerDep, form: FormDep, ident: str) -> Response:
    with runtime(request).db.session() as s:
        row = templates.get(s, me.ctx, ident, VIEW)
        templates.delete(s, me.ctx, row, VIEW)
    return redirect("/dashboard/templates?done=deleted")
