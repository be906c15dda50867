"""The operations table is the work queue.

A worker claims an operation with a lease (compare-and-set on ``lease_until``),
checkpoints ``step_index`` after each step and renews the lease while it works. A
worker that dies loses the lease; another claims the operation and resumes at the
first unfinished step. At most one operation per cluster runs at a time.
How an operation ends (and moves its cluster) is ``operations.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, bindparam, exists, or_, select, update
from sqlalchemy.orm import Session, aliased

from flotilla.db import models as m
from flotilla.db.models import utcnow
from flotilla.idents import new_uuid

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


#: Is any operation pending, or running on an expired lease? Built once: a conductor's
#: workers ask this several times a second while idle.
_CLAIMABLE = (
    select(m.Operation.id)
    .where(
        m.Operation.state.in_(ACTIVE),
        or_(m.Operation.lease_until.is_(None), m.Operation.lease_until < bindparam("now")),
    )
    .limit(1)
)


def claimable(session: Session) -> bool:
    """True when :func:`claim` might find something: an operation that is pending or
    whose lease expired (whether another of its cluster's operations holds a lease is
    left to ``claim``). One indexed read; an idle conductor's workers poll with this on
    a read session instead of taking the writer's turn for a ``claim`` that finds nothing.
    """
    return session.execute(_CLAIMABLE, {"now": utcnow()}).first() is not None


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


def mine(op_id: int, owner: str) -> Any:
    """The WHERE clause of an operation this worker (``owner``) still runs."""
    return and_(m.Operation.id == op_id, m.Operation.lease_owner == owner, m.Operation.state == "running")


def renew(session: Session, op_id: int, owner: str, lease_seconds: float) -> bool:
    """Extend our lease; False if we lost it (cancelled, or claimed by another worker)."""
    result = session.execute(
        update(m.Operation)
        .where(mine(op_id, owner))
        .values(lease_until=utcnow() + timedelta(seconds=lease_seconds))
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def checkpoint(
    session: Session, op_id: int, owner: str, *, step_index: int, step_count: int, step_name: str | None
) -> bool:
    """Record that steps before ``step_index`` are done. False if the lease was lost."""
    result = session.execute(
        update(m.Operation)
        .where(mine(op_id, owner))
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
