"""A template as ``GET /v1/clustertemplates/{ident}`` shows it: one prepared statement.

The same answer as :func:`flotilla.services.templates.get` (policy, visibility, the
NotFound and Conflict words), read as a dict by column name through
:class:`~flotilla.db.prepared.Prepared` instead of an ORM session.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, Select, and_, bindparam, or_, select

from flotilla.context import RequestContext
from flotilla.db import models as m
from flotilla.db.engine import Database
from flotilla.db.prepared import Prepared
from flotilla.errors import Conflict, Forbidden, NotFound
from flotilla.idents import is_uuid
from flotilla.services.prepared_pages import PagePlan, PreparedPages
from flotilla.services.templates import View

_TABLE = m.ClusterTemplate.__table__


def _show(by_uuid: bool, everyone: bool, narrow: bool) -> Prepared:
    """``everyone``: an admin's clustertemplate view sees every row; anyone else their
    project's and the public ones (``templates.visible(..., listing=False)``). ``narrow``:
    only the key columns (uuid, row_version), with the same WHERE."""
    col = _TABLE.c.uuid if by_uuid else _TABLE.c.name
    columns = (_TABLE.c.uuid, _TABLE.c.row_version) if narrow else tuple(_TABLE.columns)
    stmt = select(*columns).where(col == bindparam("ident"))
    if not everyone:
        stmt = stmt.where(or_(_TABLE.c.project_id == bindparam("project"), _TABLE.c.public.is_(True)))
    return Prepared(stmt.limit(2))


_SHOW = {
    (by_uuid, everyone, narrow): _show(by_uuid, everyone, narrow)
    for by_uuid in (True, False)
    for everyone in (True, False)
    for narrow in (True, False)
}


#: Where a show's row has its uuid and ``row_version`` (the show selects every column in order).
_KEY_AT = tuple(list(_TABLE.columns.keys()).index(k) for k in ("uuid", "row_version"))


@dataclass(frozen=True)
class Found:
    """A show's row as the database returned it and what turns it into a dict by column name."""

    raw: Any
    prepared: Prepared
    engine: Engine

    @property
    def key(self) -> tuple[Any, ...]:
        """What :meth:`ShowPlan.key` gives for the same state of the row: (uuid, row_version)
        as the database returned them. The database changes ``row_version`` on every insert
        and update of the row (migration 0007's triggers), whoever writes it; the row's
        values themselves cannot be the key (PostgreSQL returns JSON columns as dicts)."""
        raw = self.raw
        return tuple(raw[i] for i in _KEY_AT)

    def row(self) -> dict[str, Any]:
        return self.prepared.convert(self.engine, self.raw)


@dataclass(frozen=True)
class ShowPlan:
    """The visible template named or identified by ``ident``, checked for the read role but
    not read yet: readable as its key alone (:meth:`key`) or in full (:meth:`found`), for
    :meth:`flotilla.api.render_cache.RenderCache.show`.

    Both raise NotFound, or Conflict when a name matches several, and see the same rows
    (same conditions)."""

    engine: Engine
    ident: str
    by_uuid: bool
    everyone: bool
    project: str | None

    def key(self) -> tuple[Any, ...]:
        """(uuid, row_version) as the database returned them."""
        return tuple(self._read(narrow=True))

    def found(self) -> Found:
        return Found(raw=self._read(narrow=False), prepared=_SHOW[(self.by_uuid, self.everyone, False)],
                     engine=self.engine)  # fmt: skip

    def _read(self, *, narrow: bool) -> Any:
        prepared = _SHOW[(self.by_uuid, self.everyone, narrow)]
        rows = prepared.fetch(self.engine, {"ident": self.ident, "project": self.project})
        if not rows:
            raise NotFound(f"ClusterTemplate {self.ident} could not be found.")
        if len(rows) > 1:
            raise Conflict(
                "Multiple ClusterTemplates exist with same name. Please use the ClusterTemplate uuid instead."
            )
        return rows[0]


def show_plan(db: Database, ctx: RequestContext, ident: str, view: View) -> ShowPlan:
    """The visible template named or identified by ``ident``, ready to read (:class:`ShowPlan`).

    Raises Forbidden (no read role)."""
    if not ctx.can_read:
        raise Forbidden(f"Policy doesn't allow {view}:get to be performed.")
    return ShowPlan(engine=db.read_engine, ident=ident, by_uuid=is_uuid(ident),
                    everyone=ctx.is_admin and view == "clustertemplate", project=ctx.project_id)  # fmt: skip


def _listed(variant: str) -> Select[Any]:
    """The rows a variant lists (``templates.visible(..., listing=True)``): ``all`` (an
    admin's clustertemplate view), ``public`` (an admin's baymodel view: their project's
    and every public one), ``listed`` (anyone else: their project's and the public ones
    not hidden)."""
    stmt = select(*_TABLE.columns)
    own = _TABLE.c.project_id == bindparam("project")
    if variant == "public":
        return stmt.where(or_(own, _TABLE.c.public.is_(True)))
    if variant == "listed":
        return stmt.where(or_(own, and_(_TABLE.c.public.is_(True), _TABLE.c.hidden.is_(False))))
    return stmt


#: A row's key columns: its uuid and the version the database changes on every write.
_PAGES = PreparedPages(m.ClusterTemplate, _listed, key_columns=("uuid", "row_version"))


def list_plan(
    db: Database, ctx: RequestContext, view: View, *, limit: int | None, marker: str | None, sort_key: str,
    sort_dir: str, max_limit: int,
) -> tuple[str, PagePlan]:  # fmt: skip
    """The variant and one page, checked and ready to read as raw rows in full
    (:func:`row_dict` turns one into a dict by column name) or as its key columns (uuid,
    row_version), paged as :func:`flotilla.services.pagination.paginate` pages."""
    if not ctx.can_read:
        raise Forbidden(f"Policy doesn't allow {view}:get_all to be performed.")
    variant = "listed" if not ctx.is_admin else "all" if view == "clustertemplate" else "public"
    plan = _PAGES.plan(
        db.read_engine, variant, {"project": ctx.project_id}, limit=limit, marker=marker, sort_key=sort_key,
        sort_dir=sort_dir, max_limit=max_limit, label="ClusterTemplate",
    )  # fmt: skip
    return variant, plan


def row_dict(db: Database, variant: str, raw: Any) -> dict[str, Any]:
    return _PAGES.convert(db.read_engine, variant, raw)
