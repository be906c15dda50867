"""Clusters (the guide's bays): create, scale, resize, delete.

Every change writes the cluster row, its nodegroups and an operation row in ONE
transaction before the API answers; the conductor does the work.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, func, select, true
from sqlalchemy.orm import Session

from flotilla import lifecycle
from flotilla.context import RequestContext
from flotilla.db import models as m
from flotilla.db.models import utcnow
from flotilla.drivers.registry import CoeRegistry
from flotilla.errors import Forbidden, Invalid, InvalidTransition, NotFound
from flotilla.idents import new_uuid, random_name
from flotilla.lifecycle import Event, Status
from flotilla.services import catalog, notifications, operations, template_rules, templates
from flotilla.services.commands import (
    ClusterView,
    CreateCluster,
    Resize,
    RotateCa,
    SetHealth,
    UpdateCluster,
    check_size,
    validate_create_cluster,
    validate_resize,
    validate_set_health,
)
from flotilla.services.lookup import by_ident
from flotilla.services.pagination import Page, paginate
from flotilla.settings import Settings

MUTABLE = frozenset({"node_count", "health_status", "health_status_reason"})


@dataclass(frozen=True)
class Limits:
    """Operator limits the service enforces (from Settings)."""

    max_clusters_per_project: int
    max_limit: int
    max_nodes_per_cluster: int = 200
    labels: template_rules.LabelLimits = field(default_factory=template_rules.LabelLimits)
    volumes: template_rules.VolumeLimits = field(default_factory=template_rules.VolumeLimits)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, volume_capacity_gb: Callable[[str], int | None] | None = None
    ) -> Limits:
        """The one place limits are read from settings (API, dashboard and CLI share it).

        ``volume_capacity_gb(provider)``: what a provider can give a node volume now (its
        free space); without it only the ``max_docker_volume_size`` setting applies.
        """
        return cls(
            max_clusters_per_project=settings.max_clusters_per_project,
            max_limit=settings.max_limit,
            max_nodes_per_cluster=settings.max_nodes_per_cluster,
            labels=template_rules.LabelLimits(
                max_labels=settings.max_labels,
                max_key_length=settings.max_label_key_length,
                max_value_length=settings.max_label_value_length,
            ),
            volumes=template_rules.VolumeLimits(settings.max_docker_volume_size, volume_capacity_gb),
        )


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


def worker_names(prefix: str, current: list[str], target: int, remove: list[str]) -> list[str]:
    """The worker names after a scale to ``target``: drop ``remove`` first, then the
    newest; add new names with increasing indexes (never reusing one in the list)."""
    keep = [n for n in current if n not in remove]
    while len(keep) > target:
        keep.pop()
    index = 1 + max((int(n.rsplit("-", 1)[1]) for n in current if n.rsplit("-", 1)[1].isdigit()), default=-1)
    while len(keep) < target:
        keep.append(f"{prefix}-node-{index}")
        index += 1
    return keep


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
    _check_quota(session, ctx, limits)

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
    _notify(session, ctx, cluster, "create", counts=(master_count, node_count))
    return cluster


def _notify(
    session: Session,
    ctx: RequestContext,
    cluster: m.Cluster,
    action: notifications.Action,
    counts: tuple[int, int] | None = None,
) -> None:
    notifications.emit(
        session, cluster=cluster, action=action, outcome="pending", ctx_user_id=ctx.user_id,
        ctx_project_id=ctx.project_id, counts=counts,
    )  # fmt: skip


def _check_quota(session: Session, ctx: RequestContext, limits: Limits) -> None:
    # One statement: the project's quota row (if any) and its cluster count.
    hard_limit = (
        select(m.Quota.hard_limit)
        .where(m.Quota.project_id == ctx.project_id, m.Quota.resource == "Cluster")
        .limit(1)
        .scalar_subquery()
    )
    clusters = (
        select(func.count(m.Cluster.id)).where(m.Cluster.project_id == ctx.project_id).scalar_subquery()
    )
    quota, count = session.execute(select(hard_limit, clusters)).one()
    limit = quota if quota is not None else limits.max_clusters_per_project
    if count >= limit:
        raise Forbidden(
            f"Resource limit exceeded: You have reached the maximum clusters per project, {limit}. "
            "You may delete a cluster to make room for a new one."
        )


def _start_update(
    session: Session,
    ctx: RequestContext,
    cluster: m.Cluster,
    allowed: frozenset[Status],
    reason: str | None = None,
) -> None:
    if Status(cluster.status) not in allowed:
        raise InvalidTransition(
            f'Updating a cluster when status is "{cluster.status}" is not supported. {_what_to_do(cluster)}'
        )
    operations.transition(session, cluster, Event.UPDATE_REQUESTED, reason)


def _what_to_do(cluster: m.Cluster) -> str:
    """The way forward from a status that refuses an update (lifecycle.RESIZABLE is the rule)."""
    status = Status(cluster.status)
    reason = (cluster.status_reason or "no reason recorded")[:300]
    if status in lifecycle.IN_PROGRESS:
        return "Wait for the current operation to end."
    if status == Status.UPDATE_FAILED:
        return (
            f"The last update failed ({reason}) and the node count was restored. Retry it with a resize, "
            f"which a cluster in UPDATE_FAILED accepts: POST /v1/clusters/{cluster.uuid}/actions/resize "
            '{"node_count": N} (`openstack coe cluster resize`, `flotilla cluster-resize`), or delete the cluster.'
        )
    if status == Status.CREATE_FAILED:
        return f"The cluster was never created ({reason}); delete it and create it again."
    if status == Status.DELETE_FAILED:
        return f"The last delete failed ({reason}); delete the cluster again."
    return f"Delete the cluster ({reason})."


def resize(
    session: Session,
    ctx: RequestContext,
    cluster: m.Cluster,
    cmd: Resize,
    *,
    coes: CoeRegistry,
    limits: Limits,
) -> m.Operation | None:
    """Change a worker nodegroup's size (the resize action: also a retry from
    UPDATE_FAILED). Returns the operation, or None for a no-op."""
    return _scale(session, ctx, cluster, cmd, coes=coes, limits=limits, resize=True)


def update(
    session: Session,
    ctx: RequestContext,
    cluster: m.Cluster,
    cmd: UpdateCluster,
    *,
    coes: CoeRegistry,
    limits: Limits,
) -> m.Operation | None:
    """Apply a PATCH: a new node count (an update operation), then hand-set health.
    Returns the update operation, or None when none was needed."""
    op = None
    if cmd.resize is not None:
        op = _scale(session, ctx, cluster, cmd.resize, coes=coes, limits=limits, resize=False)
    if cmd.health is not None:
        update_health(session, ctx, cluster, cmd.health)
    return op


def _scale(
    session: Session,
    ctx: RequestContext,
    cluster: m.Cluster,
    cmd: Resize,
    *,
    coes: CoeRegistry,
    resize: bool,
    limits: Limits,
) -> m.Operation | None:
    node_count, nodegroup = cmd.node_count, cmd.nodegroup
    _policy(ctx, "cluster", "resize" if resize else "update")
    check_size(limits.max_nodes_per_cluster, _count(session, cluster, "master"), node_count)
    validate_resize(cmd)
    ng = _find_group(session, cluster, nodegroup) if nodegroup else default_group(session, cluster, "worker")
    if ng.role == "master":
        raise Invalid("Resizing a master nodegroup is not supported.")
    if node_count < ng.min_node_count or (ng.max_node_count is not None and node_count > ng.max_node_count):
        raise Invalid(
            f"Resizing {ng.name} outside the allowed range: min_node_count = {ng.min_node_count}, "
            f"max_node_count = {ng.max_node_count}"
        )
    template = session.scalars(
        select(m.ClusterTemplate).where(m.ClusterTemplate.uuid == cluster.cluster_template_id)
    ).one()
    driver = coes.require(template.coe, template.cluster_distro, template.server_type)
    driver.validate_template({**templates.writable_view(template), "master_count": _count(session, cluster, "master"),
                              "node_count": node_count, "labels": cluster.labels or {}, "scaling": True})  # fmt: skip
    current = list(ng.node_names or [])
    remove = list(cmd.nodes_to_remove)
    unknown = [n for n in remove if n not in current]
    if unknown:
        raise Invalid(
            f"Cannot remove {', '.join(unknown)}: not a node of {ng.name}. Nodes: {', '.join(current) or 'none'}."
        )
    # After a failed operation the nodes may differ from the record: the same count then
    # reconciles (finishes or removes what the failed attempt left) instead of doing nothing.
    retry = resize and cluster.status == Status.UPDATE_FAILED.value  # resize is allowed from UPDATE_FAILED
    if node_count == ng.node_count and not remove and not retry:
        return None
    names = worker_names(node_prefix(cluster.name or "cluster", cluster.uuid), current, node_count, remove)
    added = [n for n in names if n not in current]
    purpose = f"{cmd.reason} with {', '.join(added)}" if cmd.reason and added else cmd.reason
    _start_update(session, ctx, cluster, lifecycle.RESIZABLE if resize else lifecycle.UPDATABLE, purpose)
    previous = ng.node_count
    ng.node_count = node_count
    # ng.node_names stays the committed membership; the operation carries the target and
    # operations.finish commits it on success (a failure leaves the record as it was).
    operations.transition_group(ng, Event.UPDATE_REQUESTED)
    _notify(session, ctx, cluster, "update")
    return operations.enqueue(
        session, cluster, "update",
        params={"nodegroup": ng.uuid, "previous_node_count": previous, "previous_names": current,
                "names": names, "nodes_to_remove": remove, **({"reason": purpose} if purpose else {})},
        user_id=ctx.user_id, project_id=ctx.project_id,
    )  # fmt: skip


def _count(session: Session, cluster: m.Cluster, role: str) -> int:
    return sum(ng.node_count for ng in nodegroups(session, cluster) if ng.role == role)


def _find_group(session: Session, cluster: m.Cluster, ident: str) -> m.NodeGroup:
    for ng in nodegroups(session, cluster):
        if ident in (ng.uuid, ng.name, str(ng.id)):
            return ng
    raise NotFound(f"Nodegroup {ident} could not be found.")


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
    _notify(session, ctx, cluster, "delete")
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
    _notify(session, ctx, cluster, "update")
    return operations.enqueue(
        session, cluster, "rotate_ca", params={"ca_generation": target}, timeout_minutes=10,
        user_id=ctx.user_id, project_id=ctx.project_id,
    )  # fmt: skip


def template_of(session: Session, cluster: m.Cluster) -> m.ClusterTemplate:
    return session.scalars(
        select(m.ClusterTemplate).where(m.ClusterTemplate.uuid == cluster.cluster_template_id)
    ).one()


def events(session: Session, cluster_uuid: str, limit: int = 50) -> list[m.ClusterEvent]:
    return list(
        session.scalars(
            select(m.ClusterEvent)
            .where(m.ClusterEvent.cluster_id == cluster_uuid)
            .order_by(m.ClusterEvent.id.desc())
            .limit(limit)
        )
    )
