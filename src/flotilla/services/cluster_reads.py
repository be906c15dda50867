"""A cluster as ``GET /v1/clusters/{ident}`` shows it, read in one statement.

The row, its nodegroups (for the node counts and faults) and its template's labels (for
``labels_overridden``/``added``/``skipped``) come from one outer join instead of three
lookups. Lists come as dicts by column name with their node counts, in one statement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from flotilla.context import RequestContext
from flotilla.db import models as m
from flotilla.errors import Conflict, Forbidden, NotFound
from flotilla.idents import is_uuid
from flotilla.services.clusters import ClusterView, visible
from flotilla.services.pagination import Page, paginate


@dataclass(frozen=True)
class Shown:
    cluster: m.Cluster
    groups: list[m.NodeGroup]
    template_labels: dict[str, Any]


def get_shown(session: Session, ctx: RequestContext, ident: str, view: ClusterView) -> Shown:
    """The visible cluster named or identified by ``ident``, with its parts.

    Raises Forbidden (no read role), NotFound, or Conflict when a name matches several
    clusters, with the words :func:`flotilla.services.clusters.get` uses.
    """
    if not ctx.can_read:
        raise Forbidden(f"Policy doesn't allow {view}:get to be performed.")
    label = "Cluster" if view == "cluster" else "Bay"
    col = m.Cluster.uuid if is_uuid(ident) else m.Cluster.name
    stmt = (
        select(m.Cluster, m.NodeGroup, m.ClusterTemplate.labels)
        .outerjoin(m.NodeGroup, m.NodeGroup.cluster_id == m.Cluster.uuid)
        .outerjoin(m.ClusterTemplate, m.ClusterTemplate.uuid == m.Cluster.cluster_template_id)
        .where(col == ident, visible(ctx, view))
        .order_by(m.Cluster.id, m.NodeGroup.id)
    )
    rows = session.execute(stmt).all()
    if not rows:
        raise NotFound(f"{label} {ident} could not be found.")
    cluster = rows[0][0]
    if any(r[0].id != cluster.id for r in rows):
        raise Conflict(f"Multiple {label}s exist with same name. Please use the {label} uuid instead.")
    groups = [r[1] for r in rows if r[1] is not None]
    return Shown(cluster=cluster, groups=groups, template_labels=rows[0][2] or {})


def list_rows(
    session: Session, ctx: RequestContext, view: ClusterView, *, limit: int | None, marker: str | None,
    sort_key: str, sort_dir: str, max_limit: int,
) -> Page[dict[str, Any]]:  # fmt: skip
    """:func:`flotilla.services.clusters.list_page` as dicts by column name with the node counts
    (``masters_total``, ``workers_total``) in the same statement."""
    if not ctx.can_read:
        raise Forbidden(f"Policy doesn't allow {view}:get_all to be performed.")

    def total(master: bool) -> Any:
        role = m.NodeGroup.role == "master" if master else m.NodeGroup.role != "master"
        return (
            select(func.coalesce(func.sum(m.NodeGroup.node_count), 0))
            .where(m.NodeGroup.cluster_id == m.Cluster.uuid, role)
            .correlate(m.Cluster)
            .scalar_subquery()
        )

    stmt = select(
        *m.Cluster.__table__.columns, total(True).label("masters_total"), total(False).label("workers_total")
    ).where(visible(ctx, view))
    return paginate(
        session, stmt, m.Cluster, limit=limit, marker=marker, sort_key=sort_key, sort_dir=sort_dir,
        max_limit=max_limit, label="Cluster" if view == "cluster" else "Bay", rows=True,
    )  # fmt: skip
