"""Cluster and node counts behind ``GET /v1/stats`` (reference §11.2)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from flotilla.context import RequestContext
from flotilla.db import models as m
from flotilla.errors import Forbidden, Invalid

TYPES = ("cluster",)


@dataclass(frozen=True)
class Stats:
    clusters: int
    #: ``node_count`` summed over every nodegroup (masters included) of the counted clusters.
    nodes: int


def cluster_stats(
    session: Session, ctx: RequestContext, *, project_id: str | None, stats_type: str = "cluster"
) -> Stats:
    """Counts for ``project_id``; admins without a project get totals over all projects.

    Raises Invalid for a type other than ``cluster`` (any case), Forbidden
    (``Not authorized.``) when a non-admin asks about another project.
    """
    if not ctx.can_read:
        raise Forbidden("Policy doesn't allow stats:get_all to be performed.")
    if stats_type.lower() not in TYPES:
        raise Invalid(f"Invalid stats type. Allowed values are '{','.join(TYPES)}'")
    if not ctx.is_admin:
        if project_id is not None and project_id != ctx.project_id:
            raise Forbidden("Not authorized.")
        project_id = ctx.project_id
    count = select(func.count(m.Cluster.id))
    nodes = select(func.coalesce(func.sum(m.NodeGroup.node_count), 0)).join(
        m.Cluster, m.Cluster.uuid == m.NodeGroup.cluster_id
    )
    if project_id is not None:
        count = count.where(m.Cluster.project_id == project_id)
        nodes = nodes.where(m.Cluster.project_id == project_id)
    return Stats(clusters=int(session.scalar(count) or 0), nodes=int(session.scalar(nodes) or 0))
