"""Periodic status sync: ONE provider listing per cycle for all clusters.

It records clusters whose nodes vanished behind our back (health UNHEALTHY with the
missing nodes named); it never changes a cluster's status itself.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from sqlalchemy import select

from flotilla.conductor.providers import ProviderPool
from flotilla.db import models as m
from flotilla.db.engine import Database
from flotilla.domain import NodeInfo
from flotilla.lifecycle import Status

log = logging.getLogger(__name__)

SETTLED = (Status.CREATE_COMPLETE.value, Status.UPDATE_COMPLETE.value, Status.ROLLBACK_COMPLETE.value)


def sync_once(db: Database, providers: ProviderPool) -> int:
    """One cycle; returns the number of clusters whose health changed."""
    with db.reader() as s:
        clusters = list(s.scalars(select(m.Cluster).where(m.Cluster.status.in_(SETTLED))))
        groups = list(
            s.scalars(select(m.NodeGroup).where(m.NodeGroup.cluster_id.in_([c.uuid for c in clusters])))
        )
    if not clusters:
        return 0
    expected: dict[str, list[str]] = defaultdict(list)
    for ng in groups:
        expected[ng.cluster_id].extend(ng.node_names or [])
    by_provider: dict[str, list[m.Cluster]] = defaultdict(list)
    for c in clusters:
        by_provider[c.provider].append(c)
    changed = 0
    for name, members in by_provider.items():
        try:
            nodes = providers.get(name).list_nodes(None)
        except Exception as exc:
            log.warning("status sync: provider %s unavailable: %s", name, exc)
            continue
        seen: dict[str, dict[str, NodeInfo]] = defaultdict(dict)
        for n in nodes:
            seen[n.cluster_uuid][n.name] = n
        with db.session() as s:
            for c in members:
                reasons: dict[str, str] = {}
                for node in expected[c.uuid]:
                    info = seen[c.uuid].get(node)
                    if info is None:
                        reasons[node] = "node missing"
                    elif info.state != "running":
                        reasons[node] = f"node {info.state}"
                health = "UNHEALTHY" if reasons else "HEALTHY"
                row = s.get(m.Cluster, c.id)
                if row is None or row.status not in SETTLED:
                    continue
                if row.health_status != health or (row.health_status_reason or {}) != reasons:
                    row.health_status = health
                    row.health_status_reason = reasons
                    changed += 1
                    if reasons:
                        log.warning(
                            "cluster %s: %s", c.uuid, ", ".join(f"{k}: {v}" for k, v in reasons.items())
                        )
    return changed
