"""Quotas (reference §11.1): admin CRUD over per-project limits.

Only the ``Cluster`` resource exists; ``services.clusters`` enforces it on create.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from flotilla.context import RequestContext
from flotilla.db import models as m
from flotilla.db.models import utcnow
from flotilla.errors import Conflict, Forbidden, Invalid, NotFound
from flotilla.services.pagination import Page, paginate

RESOURCES = ("Cluster",)
DEFAULT_RESOURCE = "Cluster"
DEFAULT_HARD_LIMIT = 1


@dataclass(frozen=True)
class DefaultQuota:
    """What ``GET /v1/quotas/P/R`` shows when no row exists: the configured default."""

    project_id: str
    resource: str
    hard_limit: int


def _admin(ctx: RequestContext, action: str) -> None:
    if not ctx.is_admin:
        raise Forbidden(f"Policy doesn't allow quota:{action} to be performed.")


def _not_found(project_id: str, resource: str) -> NotFound:
    return NotFound(f"Quota could not be found: project_id {project_id} resource {resource}.")


def _find(session: Session, project_id: str, resource: str, *, for_update: bool = False) -> m.Quota | None:
    stmt = select(m.Quota).where(m.Quota.project_id == project_id, m.Quota.resource == resource)
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).first()


def list_page(
    session: Session, ctx: RequestContext, *, all_tenants: bool, limit: int | None, marker: str | None,
    sort_key: str, sort_dir: str, max_limit: int,
) -> Page[m.Quota]:  # fmt: skip
    """Admins only; the caller's project unless ``all_tenants``. The marker is an integer id."""
    _admin(ctx, "get_all")
    stmt = select(m.Quota)
    if not all_tenants:
        stmt = stmt.where(m.Quota.project_id == ctx.project_id)
    return paginate(
        session, stmt, m.Quota, limit=limit, marker=marker, sort_key=sort_key, sort_dir=sort_dir,
        max_limit=max_limit, label="Quota", marker_is_id=True,
    )  # fmt: skip


def get(
    session: Session, ctx: RequestContext, project_id: str, resource: str, *, default_limit: int
) -> m.Quota | DefaultQuota:
    """The row, or the default (``default_limit``) when none is set.

    Raises Forbidden (``Not authorized.``) when a non-admin asks about another project.
    """
    if not ctx.can_read:
        raise Forbidden("Policy doesn't allow quota:get to be performed.")
    if not ctx.is_admin and project_id != ctx.project_id:
        raise Forbidden("Not authorized.")
    row = _find(session, project_id, resource)
    if row is None:
        return DefaultQuota(project_id=project_id, resource=DEFAULT_RESOURCE, hard_limit=default_limit)
    return row


def create(
    session: Session,
    ctx: RequestContext,
    *,
    project_id: str | None,
    resource: str | None,
    hard_limit: int | None,
) -> m.Quota:
    """Insert a quota. Raises Invalid (no project), Conflict (one exists already)."""
    _admin(ctx, "create")
    if not project_id:
        raise Invalid("Must provide a valid project ID.")
    resource = resource or DEFAULT_RESOURCE
    if resource not in RESOURCES:
        raise Invalid(
            f"Invalid input for field/attribute resource. Value: '{resource}'. "
            f"Value should be one of: {', '.join(RESOURCES)}"
        )
    duplicate = Conflict(f"Quota for project {project_id} already exists for resource {resource}.")
    if _find(session, project_id, resource) is not None:
        raise duplicate
    row = m.Quota(
        project_id=project_id,
        resource=resource,
        hard_limit=DEFAULT_HARD_LIMIT if hard_limit is None else hard_limit,
        created_at=utcnow(),
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError:  # a concurrent create won the unique constraint
        raise duplicate from None
    return row


def update(
    session: Session, ctx: RequestContext, project_id: str, resource: str, *, hard_limit: int | None
) -> m.Quota:
    """Change ``hard_limit`` (left as is when None). Raises NotFound when no row exists."""
    _admin(ctx, "update")
    row = _find(session, project_id, resource, for_update=True)
    if row is None:
        raise _not_found(project_id, resource)
    if hard_limit is not None:
        row.hard_limit = hard_limit
    row.updated_at = utcnow()
    session.flush()
    return row


def delete(session: Session, ctx: RequestContext, project_id: str, resource: str) -> None:
    """Remove the row (the project falls back to the default). Raises NotFound."""
    _admin(ctx, "delete")
    row = _find(session, project_id, resource, for_update=True)
    if row is None:
        raise _not_found(project_id, resource)
    session.delete(row)
