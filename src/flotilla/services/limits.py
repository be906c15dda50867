"""Operator limits the services enforce, built from Settings in one place."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from flotilla.context import RequestContext
from flotilla.db import models as m
from flotilla.errors import Forbidden
from flotilla.services import template_rules
from flotilla.settings import Settings


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


def check_quota(session: Session, ctx: RequestContext, limits: Limits) -> None:
    """Raises Forbidden when the project has as many clusters as its quota (or the
    ``max_clusters_per_project`` setting) allows."""
    row = session.scalars(
        select(m.Quota).where(m.Quota.project_id == ctx.project_id, m.Quota.resource == "Cluster")
    ).first()
    limit = row.hard_limit if row is not None else limits.max_clusters_per_project
    count = (
        session.scalar(select(func.count(m.Cluster.id)).where(m.Cluster.project_id == ctx.project_id)) or 0
    )
    if count >= limit:
        raise Forbidden(
            f"Resource limit exceeded: You have reached the maximum clusters per project, {limit}. "
            "You may delete a cluster to make room for a new one."
        )
