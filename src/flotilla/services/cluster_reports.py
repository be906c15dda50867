"""What the conductor's workers and its health monitor report about a cluster.

Workers and periodic jobs do not write cluster or nodegroup rows themselves; they report
here (DESIGN §3), in the transaction the caller opens:

* a step's outputs (API address, node addresses, versions): :func:`record_outputs`;
* the health monitor's observation: :func:`record_health`, :func:`note_health`.

Statuses and ``status_reason`` move only through ``services.operations`` (the lifecycle
table) and the cluster services.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from flotilla.db import models as m
from flotilla.lifecycle import Health

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outputs:
    """What a step found out (``None``: not reported, the stored value stays)."""

    api_address: str | None = None
    master_addresses: Sequence[str] | None = None
    node_addresses: Sequence[str] | None = None
    coe_version: str | None = None
    container_version: str | None = None


def record_outputs(session: Session, cluster_uuid: str, out: Outputs) -> None:
    """Store a step's outputs on the cluster and its default nodegroups (idempotent)."""
    values: dict[str, Any] = {}
    for key in ("api_address", "coe_version", "container_version"):
        if getattr(out, key) is not None:
            values[key] = getattr(out, key)
    for key in ("master_addresses", "node_addresses"):
        if getattr(out, key) is not None:
            values[key] = list(getattr(out, key))
    if values:
        session.execute(update(m.Cluster).where(m.Cluster.uuid == cluster_uuid).values(**values))
    for role, addrs in (("master", out.master_addresses), ("worker", out.node_addresses)):
        if addrs is not None:
            session.execute(
                update(m.NodeGroup)
                .where(m.NodeGroup.cluster_id == cluster_uuid, m.NodeGroup.role == role,
                       m.NodeGroup.is_default.is_(True))
                .values(node_addresses=list(addrs))
            )  # fmt: skip


def record_health(
    session: Session, cluster_uuid: str, health: str, reasons: Mapping[str, str], *, statuses: Collection[str]
) -> bool:
    """Store an observation's health and reasons on a cluster whose status is one of
    ``statuses`` (the monitor observes only settled and failed clusters: an operation
    that started meanwhile wins). Returns True when something changed.

    Raises ValueError for a health that is not HEALTHY / UNHEALTHY / UNKNOWN.
    """
    value = Health(health).value
    row = session.scalars(select(m.Cluster).where(m.Cluster.uuid == cluster_uuid)).first()
    if row is None or row.status not in statuses:
        return False
    new_reasons = dict(reasons)
    if row.health_status == value and (row.health_status_reason or {}) == new_reasons:
        return False
    if row.health_status != value:
        log.info("cluster %s: health %s -> %s %s", cluster_uuid, row.health_status, value, new_reasons)
    row.health_status = value
    row.health_status_reason = new_reasons
    return True


def note_health(session: Session, cluster_uuid: str, reasons: Mapping[str, str]) -> None:
    """Replace the health reasons only (e.g. why auto-healing waits), keeping the status."""
    row = session.scalars(select(m.Cluster).where(m.Cluster.uuid == cluster_uuid)).first()
    if row is not None:
        row.health_status_reason = dict(reasons)
