"""Replacing one node the service found broken (auto-healing), as an ordinary operation.

* A worker: a resize to the same count that removes it (the ``update`` operation every
  COE plans; the new worker gets the next free name).
* A master: a ``repair`` operation. The master nodegroup keeps its size; the broken
  master's name is swapped in place for a new one (``<prefix>-master-<next>``), which
  ``operations.finish`` commits as the group's members on success. Only COE drivers that
  plan ``repair`` for it get one (``CoeDriver.plan("repair", spec)``; empty: cannot).

Both carry their reason (``params["reason"]``): the update event's reason, the prefix of
``status_reason`` while the steps run, and of the final reason.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from flotilla import lifecycle
from flotilla.context import SYSTEM
from flotilla.db import models as m
from flotilla.drivers.registry import CoeRegistry
from flotilla.lifecycle import Event, Status
from flotilla.services import clusters, notifications, operations, scaling
from flotilla.services.commands import Resize


def next_name(prefix: str, role: str, taken: list[str]) -> str:
    """``<prefix>-master-<n>``: one past the highest index in ``taken`` (names never reused)."""
    index = 1 + max((int(n.rsplit("-", 1)[1]) for n in taken if n.rsplit("-", 1)[1].isdigit()), default=-1)
    return f"{prefix}-{role}-{index}"


def replace_node(
    session: Session,
    cluster: m.Cluster,
    victim: str,
    why: str,
    *,
    coes: CoeRegistry,
    limits: clusters.Limits,
) -> m.Operation | None:
    """Start replacing ``victim`` (a member of the cluster's default worker or master group)
    because of ``why``; returns the operation (None: nothing to do). The caller holds the
    cluster row locked and checked that no operation runs."""
    reason = f"auto-healing: replacing {victim} ({why})"
    master = clusters.default_group(session, cluster, "master")
    if victim not in (master.node_names or []):
        worker = clusters.default_group(session, cluster, "worker")
        op = scaling.resize(
            session,
            SYSTEM,
            cluster,
            Resize(worker.node_count, nodes_to_remove=(victim,), reason=reason),
            coes=coes,
            limits=limits,
        )
        if op is not None:
            op.params = {**(op.params or {}), "repair": victim}
        return op
    current = list(master.node_names or [])
    new = next_name(clusters.node_prefix(cluster.name or "cluster", cluster.uuid), "master", current)
    names = [new if n == victim else n for n in current]
    purpose = f"{reason} with {new}"
    if Status(cluster.status) not in lifecycle.UPDATABLE:
        return None
    operations.transition(session, cluster, Event.UPDATE_REQUESTED, purpose)
    operations.transition_group(master, Event.UPDATE_REQUESTED)
    notifications.emit(
        session, cluster=cluster, action="update", outcome="pending", ctx_user_id=SYSTEM.user_id,
        ctx_project_id=SYSTEM.project_id,
    )  # fmt: skip
    return operations.enqueue(
        session, cluster, "repair",
        params={"nodegroup": master.uuid, "previous_names": current, "names": names,
                "nodes_to_remove": [victim], "repair": victim, "reason": purpose},
    )  # fmt: skip
