"""Find a row by uuid or name (reference conventions: uuid-looking strings are uuids)."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from flotilla.errors import Conflict, NotFound
from flotilla.idents import is_uuid

T = TypeVar("T")


def by_ident(
    session: Session,
    model: type[T],
    ident: str,
    *,
    label: str,
    visible: ColumnElement[bool] | None,
    for_update: bool = False,
) -> T:
    """One visible row named or identified by ``ident``.

    Raises NotFound (``<label> <ident> could not be found.``) or Conflict when a name
    matches several rows.
    """
    col: Any = model.uuid if is_uuid(ident) else model.name  # type: ignore[attr-defined]
    stmt = select(model).where(col == ident)
    if visible is not None:
        stmt = stmt.where(visible)
    if for_update:
        stmt = stmt.with_for_update()
    rows = list(session.scalars(stmt.limit(2)))
    if not rows:
        raise NotFound(f"{label} {ident} could not be found.")
    if len(rows) > 1:
        raise Conflict(f"Multiple {label}s exist with same name. Please use the {label} uuid instead.")
    return rows[0]
