"""``limit`` / ``marker`` / ``sort_key`` / ``sort_dir`` over any table (reference §4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import JSON, Select
from sqlalchemy.orm import Session

from flotilla.db.models import internal
from flotilla.errors import Invalid, NotFound
from flotilla.idents import is_uuid

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    limit: int
    sort_key: str
    sort_dir: str

    @property
    def full(self) -> bool:
        """A ``next`` link is due only when the page is full."""
        return len(self.items) == self.limit and self.limit > 0


def paginate(
    session: Session,
    stmt: Select[T],
    model: Any,
    *,
    limit: int | None,
    marker: str | None,
    sort_key: str,
    sort_dir: str,
    max_limit: int,
    label: str,
    marker_is_id: bool = False,
    rows: bool = False,
) -> Page[T]:
    """One page of ``stmt``'s rows. Raises Invalid for bad parameters, NotFound for an unknown marker.

    ``rows``: ``stmt`` selects columns, and the page holds plain dicts by column name
    instead of ORM objects: no identity map, no instance state, several times cheaper
    per row for read-only lists.

    The marker is looked up among ``stmt``'s rows, so a row the caller cannot list (another
    project's) is an unknown marker too, not a way to probe for its existence.
    """
    eff = effective_limit(model, limit=limit, sort_key=sort_key, sort_dir=sort_dir, max_limit=max_limit)
    columns = model.__table__.columns
    order = ordering(columns, sort_key, sort_dir)
    if marker is not None:
        ref: Any
        if marker_is_id:
            if not marker.isdigit() or int(marker) > 2**31 - 1:
                raise Invalid(f"Invalid marker {marker}: expected an integer id.")
            ref = _first(session, stmt.where(columns["id"] == int(marker)), rows)
        else:
            if not is_uuid(marker):
                raise Invalid(
                    f"Invalid input for field/attribute marker. Value: '{marker}'. Expected a UUID."
                )
            ref = _first(session, stmt.where(columns["uuid"] == marker), rows)
        if ref is None:
            raise NotFound(f"{label} {marker} could not be found.")
        stmt = stmt.where(after(columns, sort_key, sort_dir, getattr(ref, sort_key), ref.id))
    page = stmt.order_by(*order).limit(eff)
    items: list[Any]
    if rows:
        result = session.execute(page)
        keys = list(result.keys())
        items = [dict(zip(keys, row, strict=True)) for row in result]
    else:
        items = list(session.scalars(page))
    return Page(items=items, limit=eff, sort_key=sort_key, sort_dir=sort_dir)


def effective_limit(model: Any, *, limit: int | None, sort_key: str, sort_dir: str, max_limit: int) -> int:
    """The page size for ``limit``. Raises Invalid for a bad direction, key or limit."""
    if sort_dir not in ("asc", "desc"):
        raise Invalid(f"Invalid sort direction: {sort_dir}. Acceptable values are 'asc' or 'desc'")
    columns = model.__table__.columns
    if sort_key not in columns or isinstance(columns[sort_key].type, JSON) or internal(columns[sort_key]):
        raise Invalid(f'The sort_key value "{sort_key}" is an invalid field for sorting')
    if limit is not None and limit <= 0:
        raise Invalid("Limit must be positive")
    return min(limit, max_limit) if limit is not None else max_limit


def ordering(columns: Any, sort_key: str, sort_dir: str) -> list[Any]:
    """ORDER BY the sort key, then the id (a stable order for markers)."""
    col = columns[sort_key]
    order = [col.asc() if sort_dir == "asc" else col.desc()]
    if sort_key != "id":
        order.append(columns["id"].asc() if sort_dir == "asc" else columns["id"].desc())
    return order


def after(columns: Any, sort_key: str, sort_dir: str, ref_val: Any, ref_id: Any) -> Any:
    """Rows after the marker row (``ref_val`` its sort value, ``ref_id`` its id)."""
    col, idc = columns[sort_key], columns["id"]
    if sort_key == "id":
        return idc > ref_id if sort_dir == "asc" else idc < ref_id
    if sort_dir == "asc":
        return (col > ref_val) | ((col == ref_val) & (idc > ref_id))
    return (col < ref_val) | ((col == ref_val) & (idc < ref_id))


def _first(session: Session, stmt: Select[Any], rows: bool) -> Any:
    return session.execute(stmt).first() if rows else session.scalars(stmt).first()
