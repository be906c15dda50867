"""The operations table is the work queue.

A worker claims an operation with a lease (compare-and-set on ``lease_until``),
checkpoints ``step_index`` after each step and renews the lease while it works. A
worker that dies loses the lease; another claims the operation and resumes at the
first unfinished step. At most one operation per cluster runs at a time.

Status changes of the cluster happen here and in ``services.clusters`` only, through
``lifecycle.next_status``, in the same transaction as the operation row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, exists, or_, select, update
from sqlalchemy.orm import Session, aliased

from flotilla import lifecycle
from flotilla.db import models as m
from flotilla.db.models import utcnow
from flotilla.errors import InvalidTransition
from flotilla.idents import new_uuid
from flotilla.lifecycle import Event, Status
from flotilla.services import notifications, template_rules

log = logging.getLogger(__name__)

ACTIVE = ("pending", "running")


def enqueue(
    session: Session,
    cluster: m.Cluster,
    kind: str,
    *,
    params: dict[str, Any] | None = None,
    timeout_minutes: int | None = None,
    user_id: str | None = None,
    project_id: str | None = None,
) -> m.Operation:
    """Add an operation for ``cluster`` (caller owns the transaction)."""
    now = utcnow()
    minutes = timeout_minutes if timeout_minutes is not None else cluster.create_timeout or 60
    op = m.Operation(
        uuid=new_uuid(), cluster_id=cluster.uuid, kind=kind, params=params or {}, state="pending",
        step_index=0, deadline=now + timedelta(minutes=minutes), user_id=user_id, project_id=project_id,
        created_at=now,
    )  # fmt: skip
    session.add(op)
    return op


def cancel_active(session: Session, cluster_uuid: str, reason: str) -> int:
    """Mark the cluster's pending/running operations cancelled (a delete supersedes them).

    A running worker notices at its next checkpoint and stops; its lease still blocks
    the next operation of the cluster until it lets go or the lease runs out.
    """
    result = session.execute(
        update(m.Operation)
        .where(m.Operation.cluster_id == cluster_uuid, m.Operation.state.in_(ACTIVE))
        .values(state="cancelled", error=reason, finished_at=utcnow())
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def active_for(session: Session, cluster_uuid: str) -> m.Operation | None:
    return session.scalars(
        select(m.Operation)
        .where(m.Operation.cluster_id == cluster_uuid, m.Operation.state.in_(ACTIVE))
        .order_by(m.Operation.id.desc())
    ).first()


def claim(session: Session, owner: str, lease_seconds: float, *, skip_locked: bool) -> m.Operation | None:
    """Take the oldest claimable operation, or None.

    Claimable: pending, or running with an expired lease (its worker died), and no
    other operation of the same cluster holds a live lease (running or cancelled).
    """
    now = utcnow()
    other = aliased(m.Operation)
    busy = exists().where(
        other.cluster_id == m.Operation.cluster_id,
        other.id != m.Operation.id,
        other.lease_until.is_not(None),
        other.lease_until > now,
        other.state.in_(("running", "cancelled")),
    )
    stmt = (
        select(m.Operation)
        .where(
            m.Operation.state.in_(ACTIVE),
            or_(m.Operation.lease_until.is_(None), m.Operation.lease_until < now),
            ~busy,
        )
        .order_by(m.Operation.id)
        .limit(1)
    )
    if skip_locked:
        stmt = stmt.with_for_update(skip_locked=True)
    op = session.scalars(stmt).first()
    if op is None:
        return None
    result = session.execute(
        update(m.Operation)
        .where(
            m.Operation.id == op.id,
            or_(m.Operation.lease_until.is_(None), m.Operation.lease_until < now),
            m.Operation.state.in_(ACTIVE),
        )
        .values(
            lease_owner=owner,
            lease_until=now + timedelta(seconds=lease_seconds),
            state="running",
            attempts=m.Operation.attempts + 1,
            started_at=op.started_at or now,
        )
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return None
    session.refresh(op)
    if op.attempts > 1:
        log.info(
            "cluster %s: resuming %s operation %s at step %d", op.cluster_id, op.kind, op.uuid, op.step_index
        )
    return op


def _mine(op_id: int, owner: str) -> Any:
    return and_(m.Operation.id == op_id, m.Operation.lease_owner == owner, m.Operation.state == "running")


def renew(session: Session, op_id: int, owner: str, lease_seconds: float) -> bool:
    """Extend our lease; False if we lost it (cancelled, or claimed by another worker)."""
    result = session.execute(
        update(m.Operation)
        .where(_mine(op_id, owner))
        .values(lease_until=utcnow() + timedelta(seconds=lease_seconds))
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def checkpoint(
    session: Session, op_id: int, owner: str, *, step_index: int, step_count: int, step_name: str | None
) -> bool:
    """Record that steps before ``step_index`` are done. False if the lease was lost."""
    result = session.execute(
        update(m.Operation)
        .where(_mine(op_id, owner))
        .values(
            step_index=step_index,
            step_count=step_count,
            step_name=step_name,
            detail=None,
            updated_at=utcnow(),
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def release(session: Session, op_id: int, owner: str) -> None:
    """Let go of a lease we hold on a cancelled operation (so the next one may run)."""
    session.execute(
        update(m.Operation)
        .where(m.Operation.id == op_id, m.Operation.lease_owner == owner)
        .values(lease_until=None, lease_owner=None)
    )


def holder(host: str, pid: int) -> str:
    """The lease-holder prefix of one process: ``HOST:PID`` (workers add ``/wN``)."""
    return f"{host}:{pid}"


def parse_holder(owner: str) -> tuple[str, int] | None:
    """(host, pid) from a lease owner ``HOST:PID/...``, or None for another shape."""
    process = owner.split("/", 1)[0]
    host, sep, pid = process.rpartition(":")
    if not sep or not host or not pid.isdigit():
        return None
    return host, int(pid)


def release_all(session: Session, process: str) -> int:
    """Let go of every lease held by the workers of ``process`` (``HOST:PID``): called when
    the process stops (SIGTERM), so a restarted or sibling conductor resumes at once.
    The operations stay running/cancelled; only their leases end. Returns how many."""
    result = session.execute(
        update(m.Operation)
        .where(m.Operation.lease_owner.like(f"{process}/%"), m.Operation.lease_until.is_not(None))
        .values(lease_until=None, lease_owner=None)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def reclaim_dead(session: Session, host: str, alive: Callable[[int], bool]) -> list[str]:
    """End the live leases held by processes of ``host`` that are gone (``alive(pid)`` is
    False): their operations are resumed at once instead of when the lease runs out.
    Leases of other hosts are left alone (we cannot see their processes). Returns the
    uuids of the operations whose lease was reclaimed."""
    now = utcnow()
    rows = session.scalars(
        select(m.Operation).where(
            m.Operation.lease_until.is_not(None),
            m.Operation.lease_until > now,
            m.Operation.lease_owner.like(f"{host}:%"),
        )
    ).all()
    reclaimed = []
    for op in rows:
        parsed = parse_holder(op.lease_owner or "")
        if parsed is None or parsed[0] != host or alive(parsed[1]):
            continue
        result = session.execute(
            update(m.Operation)
            .where(m.Operation.id == op.id, m.Operation.lease_owner == op.lease_owner)
            .values(lease_until=None, lease_owner=None)
        )
        if result.rowcount:  # type: ignore[attr-defined]
            log.info("cluster %s: reclaimed the lease of %s (its holder %s is gone)", op.cluster_id, op.uuid,
                     op.lease_owner)  # fmt: skip
            reclaimed.append(op.uuid)
    return reclaimed


@dataclass(frozen=True)
class Progress:
    """Where a running operation is: step ``step`` (1-based) of ``total``, and what it does."""

    step: int
    total: int
    name: str
    detail: str | None = None

    @property
    def label(self) -> str:
        """``"joining workers (2 of 5)"``."""
        return f"{self.name} ({self.detail})" if self.detail else self.name

    @property
    def text(self) -> str:
        """``"3/7 joining workers (2 of 5)"``: how Magnum's ``status_reason`` shows it."""
        return f"{self.step}/{self.total} {self.label}"


def record_progress(session: Session, op_id: int, cluster_uuid: str, progress: Progress) -> None:
    """Store the step as data on the operation (index, count, name, detail) and render it
    into the cluster's ``status_reason`` (the field Magnum clients read)."""
    session.execute(
        update(m.Operation)
        .where(m.Operation.id == op_id)
        .values(step_index=progress.step - 1, step_count=progress.total, step_name=progress.name,
                detail=progress.detail)
    )  # fmt: skip
    set_progress(session, cluster_uuid, progress.text)


def progress_of(session: Session, cluster_uuid: str) -> Progress | None:
    """The running operation's step, or None (no operation, or none claimed yet)."""
    op = active_for(session, cluster_uuid)
    if op is None or op.state != "running" or not op.step_count:
        return None
    step = min(op.step_index + 1, op.step_count)
    return Progress(step, op.step_count, op.step_name or "", op.detail)


def set_progress(session: Session, cluster_uuid: str, text: str) -> None:
    """Show ``text`` in ``status_reason`` while an operation runs (see record_progress)."""
    session.execute(
        update(m.Cluster)
        .where(m.Cluster.uuid == cluster_uuid, m.Cluster.status.in_([s.value for s in lifecycle.IN_PROGRESS]))
        .values(status_reason=text)
    )


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
    row = session.scalars(select(m.Operation).where(_mine(op.id, owner)).with_for_update()).first()
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
    session.execute(
        update(m.NodeGroup)
        .where(m.NodeGroup.cluster_id == cluster.uuid, m.NodeGroup.status.like("%_IN_PROGRESS"))
        .values(status=status.value, status_reason=failed_reason, updated_at=now)
    )
    return status


def _done_reason(session: Session, op: m.Operation, cluster: m.Cluster, now: datetime) -> str:
    """``create completed in 12.3 s``; a create also says where the nodes keep images and
    containers, as they really run (e.g. ``Docker storage: overlay2 on a 5 GB volume per
    node``; Kubernetes nodes: ``container storage: containerd's overlayfs snapshotter ...``)."""
    started = op.started_at or op.created_at
    text = f"{op.kind} completed in {(now - started).total_seconds():.1f} s"
    if op.kind != "create":
        return text
    template = session.execute(
        select(m.ClusterTemplate.coe, m.ClusterTemplate.docker_storage_driver).where(
            m.ClusterTemplate.uuid == cluster.cluster_template_id
        )
    ).first()
    coe, driver = template if template is not None else (None, None)
    size = f" on a {cluster.docker_volume_size} GB volume per node" if cluster.docker_volume_size else ""
    if coe == "kubernetes":
        # No Docker on Kubernetes nodes: containerd keeps images and containers on the node's /var.
        where = size or " on each node's /var volume"
        return text + f"; container storage: containerd's overlayfs snapshotter{where}"
    driver = template_rules.served_storage_driver(cluster.provider, driver)
    if driver is None and cluster.provider == "local":
        driver = template_rules.LOCAL_STORAGE_DRIVERS["overlay2"]
    if driver:
        text += f"; Docker storage: {driver}{size}"
    return text


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
    """A successful scale makes its target the nodegroup's recorded members."""
    params = op.params or {}
    group, names = params.get("nodegroup"), params.get("names")
    if op.kind != "update" or group is None or names is None:
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
