"""Operations: how one ends (``finish``, ``reap``) and moves its cluster and nodegroups
along the lifecycle table (``transition``, ``transition_group``).

The queue itself (enqueue, claim with a lease, checkpoint, renew) is ``work_queue.py``,
a running operation's progress ``progress.py``; both are re-exported here, so callers
keep naming ``operations.claim`` / ``operations.Progress``.

Status changes of the cluster happen here and in the request services (``clusters``,
``scaling``, ``upgrades``, ``repairs``) only, through
``lifecycle.next_status``, in the same transaction as the operation row.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from flotilla import lifecycle
from flotilla.db import models as m
from flotilla.db.models import utcnow
from flotilla.drivers.registry import installed_coe_driver
from flotilla.errors import InvalidTransition
from flotilla.lifecycle import Event, Status
from flotilla.services import notifications, template_rules
from flotilla.services.progress import Progress as Progress
from flotilla.services.progress import progress_of as progress_of
from flotilla.services.progress import purpose_of as purpose_of
from flotilla.services.progress import record_progress as record_progress
from flotilla.services.progress import set_progress as set_progress
from flotilla.services.work_queue import ACTIVE, mine
from flotilla.services.work_queue import active_for as active_for
from flotilla.services.work_queue import cancel_active as cancel_active
from flotilla.services.work_queue import checkpoint as checkpoint
from flotilla.services.work_queue import claim as claim
from flotilla.services.work_queue import claimable as claimable
from flotilla.services.work_queue import enqueue as enqueue
from flotilla.services.work_queue import holder as holder
from flotilla.services.work_queue import reclaim_dead as reclaim_dead
from flotilla.services.work_queue import release as release
from flotilla.services.work_queue import release_all as release_all
from flotilla.services.work_queue import renew as renew

log = logging.getLogger(__name__)


def transition(session: Session, cluster: m.Cluster, event: Event, reason: str | None) -> Status:
    """Move ``cluster`` along the lifecycle table, compare-and-set on its old status."""
    session.flush()
    new = lifecycle.next_status(cluster.status, event)
    result = session.execute(
        update(m.Cluster)
        .where(m.Cluster.uuid == cluster.uuid, m.Cluster.status == cluster.status)
        .values(status=new.value, status_reason=reason, updated_at=utcnow())
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        raise InvalidTransition(f"cluster {cluster.uuid} changed status concurrently")
    session.add(m.ClusterEvent(cluster_id=cluster.uuid, status=new.value, reason=reason or event.value))
    session.expire(cluster, ["status", "status_reason", "updated_at"])
    return new


def finish(
    session: Session, op: m.Operation, owner: str, *, failed_reason: str | None = None
) -> Status | None:
    """End ``op`` (ours): the cluster moves to *_COMPLETE or *_FAILED (with the reason).

    A successful delete removes the cluster's rows (it then answers 404).
    Returns the new cluster status, or None if we no longer own the operation.
    """
    row = session.scalars(select(m.Operation).where(mine(op.id, owner)).with_for_update()).first()
    if row is None:
        return None
    cluster = session.scalars(
        select(m.Cluster).where(m.Cluster.uuid == op.cluster_id).with_for_update()
    ).first()
    now = utcnow()
    row.state = "failed" if failed_reason else "done"
    row.error = failed_reason
    row.finished_at = now
    row.lease_until = None
    if cluster is None:
        return None
    if failed_reason:
        _restore_counts_on_failure(session, cluster, row)
        status = transition(session, cluster, Event.FAILED, failed_reason)
    else:
        _commit_members(session, row)
        status = transition(session, cluster, Event.SUCCEEDED, _done_reason(session, row, cluster, now))
    session.refresh(cluster)
    action: notifications.Action = (
        "create" if row.kind == "create" else "delete" if row.kind == "delete" else "update"
    )
    notifications.emit(
        session, cluster=cluster, action=action, outcome="failure" if failed_reason else "success",
        ctx_user_id=row.user_id, ctx_project_id=row.project_id, reason=failed_reason,
    )  # fmt: skip
    if status == Status.DELETE_COMPLETE:
        purge_cluster(session, cluster.uuid)
        return status
    moving = select(m.NodeGroup).where(
        m.NodeGroup.cluster_id == cluster.uuid, m.NodeGroup.status.like("%_IN_PROGRESS")
    )
    for group in session.scalars(moving):
        transition_group(group, Event.FAILED if failed_reason else Event.SUCCEEDED, failed_reason)
    return status


def _done_reason(session: Session, op: m.Operation, cluster: m.Cluster, now: datetime) -> str:
    """``create completed in 12.3 s``; a create also says where the nodes keep images and
    containers, as they really run, in the COE driver's words (``CoeDriver.storage_summary``:
    e.g. ``Docker storage: overlay2 on a 5 GB volume per node``)."""
    started = op.started_at or op.created_at
    text = f"{op.kind} completed in {(now - started).total_seconds():.1f} s"
    purpose = purpose_of(op)
    if purpose:
        return f"{purpose}; {text}"
    if op.kind != "create":
        return text
    template = session.execute(
        select(m.ClusterTemplate.coe, m.ClusterTemplate.docker_storage_driver).where(
            m.ClusterTemplate.uuid == cluster.cluster_template_id
        )
    ).first()
    coe, storage = template if template is not None else (None, None)
    coe_driver = installed_coe_driver(coe) if coe else None
    if coe_driver is None:
        return text
    # The storage driver the provider really serves (what the template shows since it was made).
    storage = template_rules.served_storage_driver(cluster.provider, storage)
    if storage is None and cluster.provider == "local":
        storage = template_rules.LOCAL_STORAGE_DRIVERS["overlay2"]
    summary = coe_driver.storage_summary(storage, cluster.docker_volume_size)
    return f"{text}; {summary}" if summary else text


def _restore_counts_on_failure(session: Session, cluster: m.Cluster, op: m.Operation) -> None:
    """A failed scale keeps the node count the cluster really has (Magnum restores it)."""
    if op.kind != "update":
        return
    params = op.params or {}
    previous = params.get("previous_node_count")
    group = params.get("nodegroup")
    if previous is None or group is None:
        return
    session.execute(update(m.NodeGroup).where(m.NodeGroup.uuid == group).values(node_count=int(previous)))


def _commit_members(session: Session, op: m.Operation) -> None:
    """A successful scale (or node replacement) makes its target the nodegroup's recorded members."""
    params = op.params or {}
    group, names = params.get("nodegroup"), params.get("names")
    if op.kind not in ("update", "repair") or group is None or names is None:
        return
    session.execute(update(m.NodeGroup).where(m.NodeGroup.uuid == group).values(node_names=list(names)))


def purge_cluster(session: Session, cluster_uuid: str) -> None:
    """Remove every row of a deleted cluster (the events stay for the audit trail)."""
    session.execute(delete(m.NodeGroup).where(m.NodeGroup.cluster_id == cluster_uuid))
    session.execute(delete(m.ClusterCa).where(m.ClusterCa.cluster_id == cluster_uuid))
    session.execute(delete(m.Cluster).where(m.Cluster.uuid == cluster_uuid))


def expired(session: Session) -> list[m.Operation]:
    """Active operations past their deadline whose lease ran out (the reaper's work)."""
    now = utcnow()
    return list(
        session.scalars(
            select(m.Operation).where(
                m.Operation.state.in_(ACTIVE),
                m.Operation.deadline < now,
                or_(m.Operation.lease_until.is_(None), m.Operation.lease_until < now),
            )
        )
    )


def reap(session: Session, op: m.Operation, owner: str, lease_seconds: float) -> Status | None:
    """Fail an operation that outlived its deadline with no live worker."""
    now = utcnow()
    result = session.execute(
        update(m.Operation)
        .where(
            m.Operation.id == op.id,
            m.Operation.state.in_(ACTIVE),
            or_(m.Operation.lease_until.is_(None), m.Operation.lease_until < now),
        )
        .values(lease_owner=owner, lease_until=now + timedelta(seconds=lease_seconds), state="running")
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return None
    session.refresh(op)
    minutes = int(((op.deadline or now) - op.created_at).total_seconds() // 60)
    step = f" at step {op.step_index + 1}/{op.step_count} ({op.step_name})" if op.step_count else ""
    return finish(session, op, owner, failed_reason=f"Timed out after {minutes} min{step}.")


def transition_group(group: m.NodeGroup, event: Event, reason: str | None = None) -> Status:
    """Move a nodegroup along ``lifecycle.NODEGROUP_TRANSITIONS`` (the caller's transaction
    holds its cluster's row). An operation's end (SUCCEEDED / FAILED) also sets the group's
    ``status_reason`` (the failure, or none); a request leaves it as it was.

    Raises InvalidTransition when the table has no such edge.
    """
    new = lifecycle.next_nodegroup_status(group.status, event)
    group.status = new.value
    if event in (Event.SUCCEEDED, Event.FAILED):
        group.status_reason = reason
    group.updated_at = utcnow()
    return new
