"""Clusters (the guide's bays): create, delete, rotate the CA, set health; reads.
Scaling (PATCH node_count, resize) is in ``scaling.py``, limits in ``limits.py``.

Every change writes the cluster row, its nodegroups and an operation row in ONE
transaction before the API answers; the conductor does the work.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import ColumnElement, func, select, true
from sqlalchemy.orm import Session

from flotilla import lifecycle
from flotilla.context import RequestContext
from flotilla.db import models as m
from flotilla.db.models import utcnow
from flotilla.drivers.registry import CoeRegistry
from flotilla.errors import Forbidden, Invalid, NotFound
from flotilla.idents import new_uuid, random_name
from flotilla.lifecycle import Event, Status
from flotilla.services import catalog, notifications, operations, template_rules, templates
from flotilla.services.commands import (
    ClusterView,
    CreateCluster,
    RotateCa,
    SetHealth,
    validate_create_cluster,
    validate_set_health,
)
from flotilla.services.limits import Limits as Limits  # re-exported: the API builds it from here
from flotilla.services.limits import check_quota
from flotilla.services.lookup import by_ident
from flotilla.services.pagination import Page, paginate


def _label(view: ClusterView) -> str:
    return "Cluster" if view == "cluster" else "Bay"


def visible(ctx: RequestContext, view: ClusterView) -> ColumnElement[bool]:
    if ctx.is_admin and view == "cluster":
        return true()
    return m.Cluster.project_id == ctx.project_id


def _policy(ctx: RequestContext, view: ClusterView, action: str) -> None:
    ok = ctx.can_read if action in ("get", "get_all", "detail") else ctx.can_write
    if not ok:
        raise Forbidden(f"Policy doesn't allow {view}:{action} to be performed.")


def check_write(ctx: RequestContext, cluster: m.Cluster, action: str) -> None:
    """Raises Forbidden unless the caller may change ``cluster`` (readers may not)."""
    _policy(ctx, "cluster", action)


def get(
    session: Session, ctx: RequestContext, ident: str, view: ClusterView, *, for_update: bool = False
) -> m.Cluster:
    _policy(ctx, view, "get")
    return by_ident(
        session, m.Cluster, ident, label=_label(view), visible=visible(ctx, view), for_update=for_update
    )


def list_page(
    session: Session, ctx: RequestContext, view: ClusterView, *, limit: int | None, marker: str | None,
    sort_key: str, sort_dir: str, max_limit: int,
) -> Page[m.Cluster]:  # fmt: skip
    _policy(ctx, view, "get_all")
    stmt = select(m.Cluster).where(visible(ctx, view))
    return paginate(
        session, stmt, m.Cluster, limit=limit, marker=marker, sort_key=sort_key, sort_dir=sort_dir,
        max_limit=max_limit, label=_label(view),
    )  # fmt: skip


def nodegroups(session: Session, cluster: m.Cluster) -> list[m.NodeGroup]:
    return list(
        session.scalars(
            select(m.NodeGroup).where(m.NodeGroup.cluster_id == cluster.uuid).order_by(m.NodeGroup.id)
        )
    )


def node_counts(session: Session, cluster_uuids: list[str]) -> dict[str, tuple[int, int]]:
    """(masters, workers) per cluster, in one query."""
    out: dict[str, tuple[int, int]] = {}
    if not cluster_uuids:
        return out
    rows = session.execute(
        select(m.NodeGroup.cluster_id, m.NodeGroup.role, func.sum(m.NodeGroup.node_count))
        .where(m.NodeGroup.cluster_id.in_(cluster_uuids))
        .group_by(m.NodeGroup.cluster_id, m.NodeGroup.role)
    )
    for cluster_id, role, total in rows:
        masters, workers = out.get(cluster_id, (0, 0))
        if role == "master":
            masters += int(total or 0)
        else:
            workers += int(total or 0)
        out[cluster_id] = (masters, workers)
    return out


def default_group(session: Session, cluster: m.Cluster, role: str) -> m.NodeGroup:
    ng = session.scalars(
        select(m.NodeGroup).where(
            m.NodeGroup.cluster_id == cluster.uuid, m.NodeGroup.role == role, m.NodeGroup.is_default.is_(True)
        )
    ).first()
    if ng is None:
        raise NotFound(f"Nodegroup default-{role} could not be found.")
    return ng


def node_prefix(name: str, uuid: str) -> str:
    """Provider node names: ``<name[:20]>-<uuid[:8]>``, lower case, DNS-safe."""
    base = re.sub(r"[^a-z0-9-]", "-", name.lower())[:20].strip("-") or "cluster"
    return f"{base}-{uuid[:8]}"


def create(
    session: Session,
    ctx: RequestContext,
    cmd: CreateCluster,
    *,
    coes: CoeRegistry,
    limits: Limits,
    default_provider: str,
) -> m.Cluster:
    """Validate, insert the cluster + default nodegroups + the create operation.

    Raises Invalid / NotFound / Forbidden with the reason (reference §7.3 order).
    """
    view = cmd.view
    _policy(ctx, view, "create")
    tview: templates.View = "clustertemplate" if view == "cluster" else "baymodel"
    try:
        template = templates.get(session, ctx, cmd.template, tview)
    except NotFound as exc:
        if cmd.missing_template_invalid:
            raise Invalid(exc.message) from None
        raise
    driver = coes.require(template.coe, template.cluster_distro, template.server_type)
    if template.driver and template.driver != driver.name:
        raise Invalid(
            f"Cluster template {template.uuid} asks for driver {template.driver}, but COE {template.coe} is served "
            f"by {driver.name} here."
        )

    name = cmd.name or random_name("cluster" if view == "cluster" else "bay")
    validate_create_cluster(cmd, name, limits.max_nodes_per_cluster)
    master_count, node_count, timeout = cmd.master_count, cmd.node_count, cmd.create_timeout

    docker_volume_size = cmd.docker_volume_size or template.docker_volume_size
    template_rules.check_storage(template.docker_storage_driver, docker_volume_size)
    limits.volumes.check(docker_volume_size, default_provider)
    keypair = cmd.keypair or template.keypair_id
    # Absent, null or {} labels: the template's (bays too: bay-create sends none, and the
    # baymodel's labels, e.g. auto_healing_enabled, must take effect as in Magnum).
    given = cmd.labels
    labels: dict[str, Any]
    if not given:
        labels = dict(template.labels or {})
    elif cmd.merge_labels:
        labels = {**(template.labels or {}), **given}
    else:
        labels = dict(given)
    template_rules.check_labels(labels, limits.labels)
    master_flavor_id = cmd.master_flavor_id or template.master_flavor_id or "m1.small"
    flavor_id = cmd.flavor_id or template.flavor_id or "m1.small"
    for flavor in dict.fromkeys((master_flavor_id, flavor_id)):  # once when both are the same
        catalog.find_flavor(session, flavor)
    if keypair:
        catalog.find_keypair(session, ctx, keypair)
    fixed_network = cmd.fixed_network or template.fixed_network
    if fixed_network:  # re-checked: the template's may predate the rule or name a removed network
        fixed_network = catalog.find_fixed_network(session, fixed_network).name  # the provider's name
    lb = cmd.master_lb_enabled
    master_lb_enabled = template.master_lb_enabled if lb is None else lb
    if master_count > 1 and not master_lb_enabled:
        raise Invalid("master_count must be 1 when master_lb_enabled is False")
    fip = cmd.floating_ip_enabled
    driver.validate_template(
        {**templates.writable_view(template), "master_count": master_count, "node_count": node_count,
         "docker_volume_size": docker_volume_size, "labels": labels}
    )  # fmt: skip
    check_quota(session, ctx, limits)

    uuid = new_uuid()
    now = utcnow()
    cluster = m.Cluster(
        uuid=uuid, name=name, project_id=ctx.project_id, user_id=ctx.user_id,
        cluster_template_id=template.uuid, keypair=keypair, docker_volume_size=docker_volume_size,
        labels=labels, master_flavor_id=master_flavor_id, flavor_id=flavor_id,
        fixed_network=fixed_network,
        fixed_subnet=cmd.fixed_subnet or template.fixed_subnet,
        floating_ip_enabled=template.floating_ip_enabled if fip is None else fip,
        master_lb_enabled=master_lb_enabled, create_timeout=timeout,
        discovery_url=cmd.discovery_url, status=Status.CREATE_IN_PROGRESS.value,
        status_reason="waiting for a conductor", health_status=None, health_status_reason={},
        stack_id=uuid, provider=default_provider, created_via=view, created_at=now,
    )  # fmt: skip
    session.add(cluster)
    prefix = node_prefix(name, uuid)
    min_nodes = int(labels.get("min_node_count", 0) or 0)
    max_nodes = labels.get("max_node_count")
    for role, count, flavor in (
        ("master", master_count, master_flavor_id),
        ("worker", node_count, flavor_id),
    ):
        names = [f"{prefix}-{'master' if role == 'master' else 'node'}-{i}" for i in range(count)]
        session.add(
            m.NodeGroup(
                uuid=new_uuid(), name=f"default-{role}", cluster_id=uuid, project_id=ctx.project_id, role=role,
                node_count=count, min_node_count=0 if role == "master" else min_nodes,
                max_node_count=None if role == "master" or max_nodes is None else int(max_nodes),
                flavor_id=flavor, image_id=template.image_id, docker_volume_size=docker_volume_size,
                labels=labels, is_default=True, node_addresses=[], node_names=names, stack_id=uuid,
                status=Status.CREATE_IN_PROGRESS.value, created_at=now,
            )
        )  # fmt: skip
    session.add(
        m.ClusterEvent(cluster_id=uuid, status=Status.CREATE_IN_PROGRESS.value, reason="create requested")
    )
    session.flush()
    operations.enqueue(
        session, cluster, "create", timeout_minutes=timeout, user_id=ctx.user_id, project_id=ctx.project_id
    )
    notify(session, ctx, cluster, "create", counts=(master_count, node_count))
    return cluster


def notify(
    session: Session,
    ctx: RequestContext,
    cluster: m.Cluster,
    action: notifications.Action,
    counts: tuple[int, int] | None = None,
) -> None:
    """``counts``: (masters, workers) when known (a create), so the nodegroups are not re-read."""
    notifications.emit(
        session, cluster=cluster, action=action, outcome="pending", ctx_user_id=ctx.user_id,
        ctx_project_id=ctx.project_id, counts=counts,
    )  # fmt: skip


def update_health(session: Session, ctx: RequestContext, cluster: m.Cluster, cmd: SetHealth) -> None:
    """Set the health fields by hand. Admins only (the role Magnum's auto-healer uses):
    the conductor's health monitor writes them, and its next observation replaces these.

    Raises Forbidden for everyone else, Invalid for an unknown status.
    """
    if not ctx.is_admin:
        raise Forbidden(
            "Policy doesn't allow cluster:update_health_status to be performed: health_status and "
            "health_status_reason are written by the service's health monitor, not by users."
        )
    validate_set_health(cmd)
    cluster.health_status = cmd.status
    cluster.health_status_reason = dict(cmd.reason)
    cluster.updated_at = utcnow()


def delete(session: Session, ctx: RequestContext, cluster: m.Cluster, view: ClusterView) -> m.Operation:
    """Start a delete. An operation still running for the cluster is cancelled first."""
    _policy(ctx, view, "delete")
    operations.transition(session, cluster, Event.DELETE_REQUESTED, "delete requested")
    cancelled = operations.cancel_active(session, cluster.uuid, "superseded by a delete")
    for ng in nodegroups(session, cluster):
        operations.transition_group(ng, Event.DELETE_REQUESTED)
    notify(session, ctx, cluster, "delete")
    return operations.enqueue(
        session, cluster, "delete", params={"cancelled": cancelled}, timeout_minutes=max(cluster.create_timeout, 10),
        user_id=ctx.user_id, project_id=ctx.project_id,
    )  # fmt: skip


def rotate_ca(session: Session, ctx: RequestContext, cluster: m.Cluster, cmd: RotateCa) -> m.Operation:
    """Start a CA rotation. Raises Forbidden, or Invalid for a non-TLS or busy cluster."""
    if not ctx.can_write or (not ctx.is_admin and cluster.project_id != ctx.project_id):
        raise Forbidden("Policy doesn't allow certificate:rotate_ca to be performed.")
    if template_of(session, cluster).tls_disabled:
        raise Invalid("Rotating the CA certificate on a non-TLS cluster is not supported")
    if Status(cluster.status) not in lifecycle.UPDATABLE:
        raise Invalid(f'Updating a cluster when status is "{cluster.status}" is not supported.')
    operations.transition(session, cluster, Event.UPDATE_REQUESTED, "CA rotation requested")
    ca = session.scalars(select(m.ClusterCa).where(m.ClusterCa.cluster_id == cluster.uuid)).first()
    target = (ca.generation if ca else 1) + 1
    notify(session, ctx, cluster, "update")
    return operations.enqueue(
        session, cluster, "rotate_ca", params={"ca_generation": target}, timeout_minutes=10,
        user_id=ctx.user_id, project_id=ctx.project_id,
    )  # fmt: skip


def template_of(session: Session, cluster: m.Cluster) -> m.ClusterTemplate:
    return session.scalars(
        select(m.ClusterTemplate).where(m.ClusterTemplate.uuid == cluster.cluster_template_id)
    ).one()


def template_names(session: Session, clusters: list[m.Cluster]) -> dict[str, str]:
    """Each cluster's template's name (its uuid when unnamed), by cluster uuid, in one query."""
    ids = {c.cluster_template_id for c in clusters}
    if not ids:
        return {}
    t = m.ClusterTemplate
    names: dict[str, str | None] = dict(session.execute(select(t.uuid, t.name).where(t.uuid.in_(ids))).all())
    return {c.uuid: names.get(c.cluster_template_id) or c.cluster_template_id for c in clusters}


def events(session: Session, cluster_uuid: str, limit: int = 50) -> list[m.ClusterEvent]:
    return list(
        session.scalars(
            select(m.ClusterEvent)
            .where(m.ClusterEvent.cluster_id == cluster_uuid)
            .order_by(m.ClusterEvent.id.desc())
            .limit(limit)
        )
    )
