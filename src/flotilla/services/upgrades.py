"""Cluster upgrade (``POST /v1/clusters/{id}/actions/upgrade``, API 1.8), after Magnum's
``cluster_actions.upgrade`` and its conductor: look the template up (404), check the
nodegroup (a non-default one only to the cluster's own template: 409), the status
(400 ``Upgrading a cluster when status is "X" is not supported.``), then ask the COE
driver (:class:`~flotilla.drivers.base.Upgradable`; drivers without it refuse with 400).
Accepted: the cluster goes UPDATE_IN_PROGRESS and an ``upgrade`` operation runs the
driver's plan; upgrading a default nodegroup moves the cluster to the template (its
``cluster_template_id`` and the template's version labels), as Magnum does.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from flotilla import lifecycle
from flotilla.context import RequestContext
from flotilla.db import models as m
from flotilla.drivers.base import Upgradable
from flotilla.drivers.registry import CoeRegistry
from flotilla.errors import Conflict, Invalid, NotFound
from flotilla.lifecycle import Event, Status
from flotilla.services import clusters, notifications, operations, templates
from flotilla.services.commands import Upgrade, validate_upgrade


def _version_labels(labels: dict[str, str] | None) -> dict[str, str]:
    """What an upgrade takes from the template: the ``*_tag`` / ``*_version`` labels (Magnum's rule)."""
    return {k: v for k, v in (labels or {}).items() if k.endswith(("_tag", "_version"))}


def upgrade(
    session: Session,
    ctx: RequestContext,
    cluster: m.Cluster,
    cmd: Upgrade,
    *,
    coes: CoeRegistry,
) -> m.Operation:
    clusters.check_write(ctx, cluster, "upgrade")
    validate_upgrade(cmd)
    nodegroup = cmd.nodegroup
    target = templates.get(session, ctx, cmd.cluster_template, "clustertemplate")
    if nodegroup:
        group = next(
            (g for g in clusters.nodegroups(session, cluster) if nodegroup in (g.uuid, g.name, str(g.id))),
            None,
        )
        if group is None:
            raise NotFound(f"Nodegroup {nodegroup} could not be found.")
    else:
        group = clusters.default_group(session, cluster, "worker")
    if not group.is_default and target.uuid != cluster.cluster_template_id:
        raise Conflict(
            f"Cluster Template is not valid for upgrade: Nodegroup {group.name} can be upgraded only to match "
            f"cluster's template ({cluster.cluster_template_id})."
        )
    if Status(cluster.status) not in lifecycle.UPDATABLE:
        raise Invalid(f'Upgrading a cluster when status is "{cluster.status}" is not supported.')
    current = clusters.template_of(session, cluster)
    if target.coe != current.coe:
        raise Invalid(
            f"Cannot upgrade a {current.coe} cluster to cluster template {target.name or target.uuid}, whose "
            f"COE is {target.coe}: an upgrade keeps the COE."
        )
    driver = coes.require(target.coe, target.cluster_distro, target.server_type)
    if not isinstance(driver, Upgradable):
        raise Invalid(
            f"Cluster upgrade is not supported for {current.coe} clusters here (its COE driver, {driver.name}, "
            "has no versions to upgrade between)."
        )
    driver.check_upgrade(
        {**templates.writable_view(current), "labels": dict(cluster.labels or {})},
        templates.writable_view(target),
    )
    operations.transition(session, cluster, Event.UPDATE_REQUESTED, "upgrade requested")
    if group.is_default:
        cluster.cluster_template_id = target.uuid
        cluster.labels = {**(cluster.labels or {}), **_version_labels(target.labels)}
    group.labels = {**(group.labels or {}), **_version_labels(target.labels)}
    operations.transition_group(group, Event.UPDATE_REQUESTED)
    notifications.emit(
        session, cluster=cluster, action="update", outcome="pending", ctx_user_id=ctx.user_id,
        ctx_project_id=ctx.project_id,
    )  # fmt: skip
    return operations.enqueue(
        session, cluster, "upgrade", params={"cluster_template": target.uuid, "nodegroup": group.uuid},
        timeout_minutes=10, user_id=ctx.user_id, project_id=ctx.project_id,
    )  # fmt: skip
