"""A cluster as ``GET /v1/clusters/{ident}`` shows it, read in one statement.

The row, its nodegroups (for the node counts and faults) and its template's labels (for
``labels_overridden``/``added``/``skipped``) come from one outer join instead of three
lookups, as dicts by column name (:class:`~flotilla.db.prepared.Prepared`, no ORM
session). Lists come as dicts by column name with their node counts, in one statement.

A show can also be read as just its key (:meth:`ShowPlan.key`): the cluster's uuid and
``row_version`` and its template's ``row_version``. The database changes the cluster's
version on every write of the row or of one of its nodegroups (migrations 0007 and 0008)
and the template's on every write of the template, so the key names everything the shown
cluster depends on; a list row's key is its uuid and version alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, Select, bindparam, func, select

from flotilla.context import RequestContext
from flotilla.db import models as m
from flotilla.db.engine import Database
from flotilla.db.prepared import Prepared
from flotilla.errors import Conflict, Forbidden, NotFound
from flotilla.idents import is_uuid
from flotilla.services.commands import ClusterView
from flotilla.services.prepared_pages import PagePlan, PreparedPages

#: The nodegroup columns a show needs (node counts, faults), by their key in :class:`Shown`.
GROUP_COLUMNS = ("name", "role", "node_count", "is_default")
#: What a show's key is made of (:meth:`ShowPlan.key`), in this order.
KEY_COLUMNS = ("uuid", "row_version", "template_row_version")


@dataclass(frozen=True)
class Shown:
    """A cluster's columns by name, its nodegroups (``GROUP_COLUMNS``, by id) and its
    template's labels."""

    cluster: dict[str, Any]
    groups: list[dict[str, Any]]
    template_labels: dict[str, Any]


def _show(by_uuid: bool, everyone: bool, narrow: bool) -> Prepared:
    """``everyone``: an admin's cluster view sees every row; anyone else their project's
    (``clusters.visible``). ``narrow``: the key columns only (and the id), one row per
    cluster; else every column, one row per nodegroup."""
    c, g, t = m.Cluster.__table__, m.NodeGroup.__table__, m.ClusterTemplate.__table__
    template_version = t.c.row_version.label("template_row_version")
    if narrow:
        stmt = (
            select(c.c.id, c.c.uuid, c.c.row_version, template_version)
            .select_from(c.outerjoin(t, t.c.uuid == c.c.cluster_template_id))
            .limit(2)  # two are a Conflict already
        )
    else:
        stmt = select(
            *c.columns, *(g.c[k].label(f"group_{k}") for k in GROUP_COLUMNS), g.c.id.label("group_id"),
            t.c.labels.label("template_labels"), template_version,
        ).select_from(
            c.outerjoin(g, g.c.cluster_id == c.c.uuid).outerjoin(t, t.c.uuid == c.c.cluster_template_id)
        ).order_by(c.c.id, g.c.id)  # fmt: skip
    stmt = stmt.where((c.c.uuid if by_uuid else c.c.name) == bindparam("ident"))
    if not everyone:
        stmt = stmt.where(c.c.project_id == bindparam("project"))
    return Prepared(stmt)


_SHOW = {
    (by_uuid, everyone, narrow): _show(by_uuid, everyone, narrow)
    for by_uuid in (True, False)
    for everyone in (True, False)
    for narrow in (True, False)
}


@dataclass(frozen=True)
class Found:
    """A show's rows as the database returned them, what turns them into a
    :class:`Shown`, and their key (:meth:`ShowPlan.key`)."""

    rows: tuple[Any, ...]
    prepared: Prepared
    engine: Engine

    @property
    def key(self) -> tuple[Any, ...]:
        """What :meth:`ShowPlan.key` gives for the same state of the database."""
        first = self.rows[0]
        return tuple(first[i] for i in _FULL_KEY_AT)

    def shown(self) -> Shown:
        # Converted once: the cluster's columns from the first row, the groups' from each.
        first = self.prepared.picker(self.engine, _CLUSTER_KEYS)(self.rows[0])
        group = self.prepared.picker(self.engine, _GROUP_KEYS)
        groups = [group(r) for r in self.rows]
        return Shown(
            cluster={k: first[k] for k in _CLUSTER_COLUMNS},
            groups=[{k: g[f"group_{k}"] for k in GROUP_COLUMNS} for g in groups if g["group_id"] is not None],
            template_labels=first["template_labels"] or {},
        )


@dataclass(frozen=True)
class ShowPlan:
    """One visible cluster named or identified by ``ident``, checked for the read role but
    not read yet: readable as its key alone (:meth:`key`) or in full (:meth:`found`).

    Both raise NotFound, or Conflict when a name matches several clusters, with the words
    :func:`flotilla.services.clusters.get` uses; they see the same rows (same conditions)."""

    engine: Engine
    ident: str
    by_uuid: bool
    everyone: bool
    project: str | None
    label: str

    def key(self) -> tuple[Any, ...]:
        """(uuid, row_version, template_row_version) as the database returned them."""
        rows = self._read(narrow=True)
        return tuple(rows[0][1:])

    def found(self) -> Found:
        prepared = _SHOW[(self.by_uuid, self.everyone, False)]
        return Found(rows=tuple(self._read(narrow=False)), prepared=prepared, engine=self.engine)

    def _read(self, *, narrow: bool) -> list[Any]:
        prepared = _SHOW[(self.by_uuid, self.everyone, narrow)]
        rows = prepared.fetch(self.engine, {"ident": self.ident, "project": self.project})
        if not rows:
            raise NotFound(f"{self.label} {self.ident} could not be found.")
        # The cluster's id is the first column of both reads (an integer, as the DBAPI gives it).
        if len(rows) > 1 and len({r[0] for r in rows}) > 1:
            raise Conflict(
                f"Multiple {self.label}s exist with same name. Please use the {self.label} uuid instead."
            )
        return rows


def show_plan(db: Database, ctx: RequestContext, ident: str, view: ClusterView) -> ShowPlan:
    """The visible cluster named or identified by ``ident``, ready to read (:class:`ShowPlan`).

    Raises Forbidden (no read role)."""
    if not ctx.can_read:
        raise Forbidden(f"Policy doesn't allow {view}:get to be performed.")
    return ShowPlan(
        engine=db.read_engine, ident=ident, by_uuid=is_uuid(ident), everyone=ctx.is_admin and view == "cluster",
        project=ctx.project_id, label="Cluster" if view == "cluster" else "Bay",
    )  # fmt: skip


def find(db: Database, ctx: RequestContext, ident: str, view: ClusterView) -> Found:
    """The visible cluster named or identified by ``ident``, with its parts, in one statement.

    Raises Forbidden (no read role), NotFound, or Conflict when a name matches several
    clusters, with the words :func:`flotilla.services.clusters.get` uses.
    """
    return show_plan(db, ctx, ident, view).found()


def get_shown(db: Database, ctx: RequestContext, ident: str, view: ClusterView) -> Shown:
    """:func:`find`, read."""
    return find(db, ctx, ident, view).shown()


#: Where the key's columns are in a full row (every variant selects the same columns).
_FULL_KEY_AT = tuple(
    [str(c.key) for c in _SHOW[(True, True, False)].stmt.selected_columns].index(k) for k in KEY_COLUMNS
)
_CLUSTER_COLUMNS = tuple(c.key for c in m.Cluster.__table__.columns if not m.internal(c))
_CLUSTER_KEYS = (*_CLUSTER_COLUMNS, "template_labels")
_GROUP_KEYS = ("id", "group_id", *(f"group_{k}" for k in GROUP_COLUMNS))


def _total(master: bool) -> Any:
    role = m.NodeGroup.role == "master" if master else m.NodeGroup.role != "master"
    return (
        select(func.coalesce(func.sum(m.NodeGroup.node_count), 0))
        .where(m.NodeGroup.cluster_id == m.Cluster.uuid, role)
        .correlate(m.Cluster)
        .scalar_subquery()
    )


def _listed(variant: str) -> Select[Any]:
    """``all`` (an admin's cluster view) or ``own`` (the caller's project: ``clusters.visible``)."""
    stmt = select(
        *m.Cluster.__table__.columns,
        _total(True).label("masters_total"),
        _total(False).label("workers_total"),
    )
    if variant == "own":
        stmt = stmt.where(m.Cluster.__table__.c.project_id == bindparam("project"))
    return stmt


#: A row's key columns: its uuid and the version the database changes on every write of the
#: row or of one of its nodegroups (so the node counts need not be read to tell).
_PAGES = PreparedPages(m.Cluster, _listed, key_columns=("uuid", "row_version"))


def list_plan(
    db: Database, ctx: RequestContext, view: ClusterView, *, limit: int | None, marker: str | None,
    sort_key: str, sort_dir: str, max_limit: int,
) -> tuple[str, PagePlan]:  # fmt: skip
    """:func:`flotilla.services.clusters.list_page` as the variant and a page ready to read
    as raw rows (:func:`row_dict` turns one into a dict by column name) with the node counts
    (``masters_total``, ``workers_total``) in the same statement, or as its key columns."""
    if not ctx.can_read:
        raise Forbidden(f"Policy doesn't allow {view}:get_all to be performed.")
    variant = "all" if ctx.is_admin and view == "cluster" else "own"
    plan = _PAGES.plan(
        db.read_engine, variant, {"project": ctx.project_id}, limit=limit, marker=marker, sort_key=sort_key,
        sort_dir=sort_dir, max_limit=max_limit, label="Cluster" if view == "cluster" else "Bay",
    )  # fmt: skip
    return variant, plan


def row_dict(db: Database, variant: str, raw: Any) -> dict[str, Any]:
    return _PAGES.convert(db.read_engine, variant, raw)
