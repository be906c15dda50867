"""Cluster templates (the guide's baymodels): one table, two views.

``view`` is ``"clustertemplate"`` or ``"baymodel"``; it selects the policy names,
the generated-name suffix and the few rules that differ (reference §6.5).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from sqlalchemy import ColumnElement, Table, and_, insert, or_, select, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, make_transient_to_detached

from flotilla.context import RequestContext
from flotilla.db import models as m
from flotilla.db.guard import refuse_unstorable_values
from flotilla.db.models import utcnow
from flotilla.drivers.registry import CoeRegistry
from flotilla.errors import Conflict, Forbidden, Invalid
from flotilla.idents import new_uuid, random_name
from flotilla.services import catalog, template_rules
from flotilla.services.commands import CreateTemplate, TemplateView, UpdateTemplate
from flotilla.services.lookup import by_ident
from flotilla.services.pagination import Page, paginate
from flotilla.services.template_rules import LabelLimits

DEFAULT_LABEL_LIMITS = LabelLimits()

View = TemplateView

#: Fields a template in use may still change (each alone), reference §6.4.
IN_USE_MUTABLE = frozenset({"name", "public", "hidden", "tags"})
WRITABLE = (
    "name", "coe", "image_id", "keypair_id", "flavor_id", "master_flavor_id", "dns_nameserver",
    "external_network_id", "fixed_network", "fixed_subnet", "network_driver", "volume_driver",
    "apiserver_port", "docker_volume_size", "docker_storage_driver", "http_proxy", "https_proxy",
    "no_proxy", "registry_enabled", "insecure_registry", "labels", "tls_disabled", "public", "hidden",
    "server_type", "master_lb_enabled", "floating_ip_enabled", "tags", "cluster_distro", "driver",
)  # fmt: skip
BOOL_DEFAULTS = {
    "registry_enabled": False,
    "tls_disabled": False,
    "public": False,
    "hidden": False,
    "master_lb_enabled": False,
    "floating_ip_enabled": True,
}


def _label(view: View) -> str:
    return "ClusterTemplate"  # Magnum says ClusterTemplate on both paths


def visible(ctx: RequestContext, view: View, *, listing: bool) -> ColumnElement[bool]:
    """Rows the caller may see (reference §9.4)."""
    own = m.ClusterTemplate.project_id == ctx.project_id
    if ctx.is_admin and view == "clustertemplate":
        return true()
    if listing:
        public = and_(m.ClusterTemplate.public.is_(True), m.ClusterTemplate.hidden.is_(False))
        if ctx.is_admin:
            public = m.ClusterTemplate.public.is_(True)
        return or_(own, public)
    return or_(own, m.ClusterTemplate.public.is_(True))


def _policy(ctx: RequestContext, view: View, action: str) -> None:
    allowed = ctx.can_write if action in ("create", "update", "delete") else ctx.can_read
    if not allowed:
        raise Forbidden(f"Policy doesn't allow {view}:{action} to be performed.")


def get(session: Session, ctx: RequestContext, ident: str, view: View) -> m.ClusterTemplate:
    _policy(ctx, view, "get")
    return by_ident(
        session, m.ClusterTemplate, ident, label=_label(view), visible=visible(ctx, view, listing=False)
    )


def list_page(
    session: Session,
    ctx: RequestContext,
    view: View,
    *,
    limit: int | None,
    marker: str | None,
    sort_key: str,
    sort_dir: str,
    max_limit: int,
) -> Page[m.ClusterTemplate]:
    _policy(ctx, view, "get_all")
    stmt = select(m.ClusterTemplate).where(visible(ctx, view, listing=True))
    return paginate(
        session, stmt, m.ClusterTemplate, limit=limit, marker=marker, sort_key=sort_key, sort_dir=sort_dir,
        max_limit=max_limit, label=_label(view),
    )  # fmt: skip


def choices(
    session: Session, ctx: RequestContext, view: View, *, max_limit: int
) -> list[tuple[str, str | None, str]]:
    """``(uuid, name, coe)`` of the templates ``ctx`` may list, by name then id, at most
    ``max_limit`` (the rows and order of :func:`list_page` without a limit, sorted by
    name): what a form's choice needs, three columns instead of whole rows (an admin's
    form lists every template)."""
    _policy(ctx, view, "get_all")
    t = m.ClusterTemplate
    stmt = select(t.uuid, t.name, t.coe).where(visible(ctx, view, listing=True))
    found = session.execute(stmt.order_by(t.name.asc(), t.id.asc()).limit(max_limit))
    return [(uuid, name, coe) for uuid, name, coe in found]


class Refs(Protocol):
    """How a template write looks up the catalog entries it names (image, flavors, networks)."""

    def distro_if_all_found(
        self, *, image: str, flavors: Sequence[str], external_network: str | None
    ) -> str | None:
        """:func:`flotilla.services.catalog.distro_if_all_found`."""

    def session(self) -> Session:
        """A session for the one-by-one lookups (something is missing, a fixed network)."""


@dataclass(frozen=True)
class SessionRefs:
    """:class:`Refs` in an ORM session."""

    s: Session

    def distro_if_all_found(
        self, *, image: str, flavors: Sequence[str], external_network: str | None
    ) -> str | None:
        return catalog.distro_if_all_found(
            self.s, image=image, flavors=flavors, external_network=external_network
        )

    def session(self) -> Session:
        return self.s


def _validate(
    refs: Refs, values: dict[str, Any], view: View, *, creating: bool, label_limits: LabelLimits
) -> None:
    """Semantic checks in Magnum's order (reference §6.3), with clear messages."""
    coe = values["coe"]
    template_rules.check_coe(coe)
    template_rules.check_server_type(values.get("server_type") or "vm")
    template_rules.check_network_driver(coe, values.get("network_driver"))
    template_rules.check_volume_driver(coe, values.get("volume_driver"))
    if creating:
        template_rules.check_storage(values.get("docker_storage_driver"), values.get("docker_volume_size"))
    dns = values.get("dns_nameserver")
    if dns:
        template_rules.check_dns(dns, single=view == "baymodel")
    flavors = [values[k] for k in ("flavor_id", "master_flavor_id") if values.get(k)]
    found = refs.distro_if_all_found(
        image=values["image_id"], flavors=flavors, external_network=values.get("external_network_id")
    )
    # Something is missing: look again one by one, in Magnum's order, to say what.
    distro = found if found is not None else catalog.find_image(refs.session(), values["image_id"]).os_distro
    if not distro:
        raise Invalid(f"Image {values['image_id']} doesn't contain os_distro field.")
    values["cluster_distro"] = distro
    if found is None:
        for flavor in flavors:
            catalog.find_flavor(refs.session(), flavor)
        if values.get("external_network_id"):
            catalog.find_external_network(refs.session(), values["external_network_id"])
    if values.get("fixed_network"):
        catalog.find_fixed_network(refs.session(), values["fixed_network"])
    template_rules.check_labels(values.get("labels"), label_limits)


def _check_publish(
    ctx: RequestContext, view: View, values: Mapping[str, Any], before: Mapping[str, Any]
) -> None:
    keys = ("public",) if view == "baymodel" else ("public", "hidden")
    for key in keys:
        if bool(values.get(key)) != bool(before.get(key, False)) and not ctx.is_admin:
            raise Forbidden("Not authorized to set public or hidden flag for cluster template.")


def _serve(vals: dict[str, Any], coes: CoeRegistry | None, provider: str | None) -> None:
    """What the provider really runs goes into the template (the storage driver), and what
    the COE driver cannot serve is refused now, when the template is created, not later
    when a cluster is (the driver's ``validate_template``; COEs not enabled here are
    refused at cluster create, as Magnum does)."""
    if vals.get("docker_storage_driver") is not None:
        vals["docker_storage_driver"] = template_rules.served_storage_driver(
            provider, vals["docker_storage_driver"]
        )
    driver = coes.get(vals["coe"]) if coes is not None else None
    if driver is not None:
        driver.validate_template(dict(vals))


def create(
    session: Session,
    ctx: RequestContext,
    cmd: CreateTemplate,
    *,
    label_limits: LabelLimits = DEFAULT_LABEL_LIMITS,
    volumes: template_rules.VolumeLimits | None = None,
    coes: CoeRegistry | None = None,
    provider: str | None = None,
) -> m.ClusterTemplate:
    """Validate and insert a template. Raises Invalid/Forbidden with the reason.

    ``volumes``: bounds on ``docker_volume_size`` for clusters on ``provider``.
    ``coes`` and ``provider`` (the default provider's name) let the template be checked
    against what will serve it; without them only the generic rules apply.
    """
    full = new_row(
        SessionRefs(session),
        ctx,
        cmd,
        label_limits=label_limits,
        volumes=volumes,
        coes=coes,
        provider=provider,
    )
    try:
        result = session.connection().execute(_INSERT, full)
    except IntegrityError:  # the uuid is unique: a client-supplied one that is taken (no lookup first)
        raise Conflict(duplicate_message(full)) from None
    pk = result.inserted_primary_key
    row = m.ClusterTemplate(id=pk[0] if pk else None, **full)
    make_transient_to_detached(row)  # as if loaded: in the session, nothing left to flush
    session.add(row)
    return row


def duplicate_message(full: Mapping[str, Any]) -> str:
    """What a create answers when the new row's uuid is taken."""
    return f"A {_label('clustertemplate')} with UUID {full['uuid']} already exists."


def new_row(
    refs: Refs,
    ctx: RequestContext,
    cmd: CreateTemplate,
    *,
    label_limits: LabelLimits = DEFAULT_LABEL_LIMITS,
    volumes: template_rules.VolumeLimits | None = None,
    coes: CoeRegistry | None = None,
    provider: str | None = None,
) -> dict[str, Any]:
    """Every column of the template :func:`create` inserts but ``id`` (the uuid and the
    name generated if not given), validated; raises as :func:`create` does."""
    view = cmd.view
    _policy(ctx, view, "create")
    vals = {k: v for k, v in cmd.fields.values().items() if v is not None}  # unset: the column default
    for key, default in BOOL_DEFAULTS.items():
        if vals.get(key) is None:
            vals[key] = default
    vals["server_type"] = vals.get("server_type") or "vm"
    template_rules.check_coe(vals["coe"])
    if not vals.get("network_driver"):
        vals["network_driver"] = template_rules.default_network_driver(vals["coe"])
    _validate(refs, vals, view, creating=True, label_limits=label_limits)
    if volumes is not None and provider is not None:
        volumes.check(vals.get("docker_volume_size"), provider)
    _serve(vals, coes, provider)
    _check_publish(ctx, view, vals, {})
    if not vals.get("name"):
        vals["name"] = random_name("template" if view == "clustertemplate" else "model")
    # Every column, so the one prepared INSERT serves every create (the ORM's unit of work
    # cost more than the statement itself); the store guard checks what the flush would have.
    full = {key: vals.get(key) for key in INSERT_COLUMNS}
    full.update(
        uuid=cmd.uuid or new_uuid(), project_id=ctx.project_id, user_id=ctx.user_id, created_at=utcnow(),
        updated_at=None,
    )  # fmt: skip
    refuse_unstorable_values(full)
    return full


_TABLE = cast(Table, m.ClusterTemplate.__table__)
_INSERT = insert(_TABLE)
#: The columns :func:`new_row` gives values for (every one but ``id``), in table order.
INSERT_COLUMNS = tuple(c.key for c in _TABLE.columns if c.key != "id" and not m.internal(c))


def writable_view(row: m.ClusterTemplate) -> dict[str, Any]:
    """The writable fields as clients see them: unset labels read back as ``{}`` (reference §5)."""
    out = {k: getattr(row, k) for k in WRITABLE}
    if out["labels"] is None:
        out["labels"] = {}
    return out


def in_use(session: Session, row: m.ClusterTemplate) -> bool:
    return (
        session.scalars(
            select(m.Cluster.id).where(m.Cluster.cluster_template_id == row.uuid).limit(1)
        ).first()
        is not None
    )


def update(
    session: Session,
    ctx: RequestContext,
    row: m.ClusterTemplate,
    cmd: UpdateTemplate,
    *,
    label_limits: LabelLimits = DEFAULT_LABEL_LIMITS,
    coes: CoeRegistry | None = None,
    provider: str | None = None,
) -> m.ClusterTemplate:
    """Apply the whole writable view after a patch (``cmd.fields``, type-checked);
    ``coes`` as for :func:`create`."""
    view, new = cmd.view, cmd.fields.values()
    _owner_policy(ctx, row, view, "update")
    before = writable_view(row)
    changed = {k for k in WRITABLE if k != "cluster_distro" and new.get(k) != before.get(k)}
    if not changed:
        return row
    if in_use(session, row) and (len(changed) > 1 or not changed <= IN_USE_MUTABLE):
        raise Invalid(f"ClusterTemplate {row.uuid} is referenced by one or multiple clusters.")
    vals = {k: new.get(k) for k in WRITABLE}
    for key, default in BOOL_DEFAULTS.items():
        if vals.get(key) is None:
            vals[key] = default
    if changed - IN_USE_MUTABLE:
        _validate(SessionRefs(session), vals, view, creating=False, label_limits=label_limits)
        _serve(vals, coes, provider)
        if vals.get("docker_storage_driver") != before.get("docker_storage_driver"):
            changed.add("docker_storage_driver")
    else:
        vals["cluster_distro"] = row.cluster_distro
    _check_publish(ctx, view, vals, before)
    for key in changed | {"cluster_distro"}:
        setattr(row, key, vals[key])
    if row.labels is None:
        row.labels = {}
    row.updated_at = utcnow()
    session.flush()
    return row


def _owner_policy(ctx: RequestContext, row: m.ClusterTemplate, view: View, action: str) -> None:
    _policy(ctx, view, action)
    if not ctx.is_admin and row.project_id != ctx.project_id:
        raise Forbidden(f"Policy doesn't allow {view}:{action} to be performed.")


def delete(session: Session, ctx: RequestContext, row: m.ClusterTemplate, view: View) -> None:
    _owner_policy(ctx, row, view, "delete")
    if in_use(session, row):
        raise Invalid(f"ClusterTemplate {row.uuid} is referenced by one or multiple clusters.")
    session.delete(row)
