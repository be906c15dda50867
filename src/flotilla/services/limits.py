"""Operator limits the services enforce, built from Settings in one place."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from flotilla.context import RequestContext
from flotilla.db import models as m
from flotilla.errors import Forbidden
from flotilla.services import template_rules
from flotilla.settings import Settings

#: Seconds the API remembers what a provider can give a node volume (see :func:`remembered`).
CAPACITY_SECONDS = 1.0


def remembered(
    capacity_gb: Callable[[str], int | None],
    seconds: float = CAPACITY_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> Callable[[str], int | None]:
    """``capacity_gb``, each provider's answer kept for ``seconds``: asking the local
    provider is a ``statvfs`` and a few path checks, a tenth of a template create's CPU
    when asked on every one. Free space a second old is as good a bound (the disk can fill
    between any check and the cluster's volumes anyway)."""
    kept: dict[str, tuple[float, int | None]] = {}

    def ask(provider: str) -> int | None:
        now = clock()
        found = kept.get(provider)
        if found is not None and now - found[0] < seconds:
            return found[1]
        value = capacity_gb(provider)
        kept[provider] = (now, value)
        return value

    return ask


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
