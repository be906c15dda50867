""":func:`~flotilla.services.pagination.paginate` for the API's hottest lists, with
every statement compiled once (:class:`~flotilla.db.prepared.Prepared`).

A family of lists shares one base SELECT per *variant* (who is asking: an admin sees
every row, a member their project's and the public ones, ...), with ``bindparam``
placeholders for the caller's project. Each (variant, sort key, direction, marker or
not) is compiled on first use and kept; the page rows come back as the DBAPI returned
them, for a caller that caches what it renders per row (:meth:`PreparedPages.convert`
turns one into the dict by column name). Same parameters, checks, error words and
order as :func:`~flotilla.services.pagination.paginate`.

:meth:`PreparedPages.plan` checks the parameters and resolves the marker once; the page
can then be read as its key columns only (:meth:`PagePlan.keys`: which rows, in which
state) and, when something is not rendered yet, in full (:meth:`PagePlan.rows`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, Integer, Select, bindparam

from flotilla.db.prepared import Prepared
from flotilla.errors import Invalid, NotFound
from flotilla.idents import is_uuid
from flotilla.services.pagination import Page, after, effective_limit, ordering


@dataclass(frozen=True)
class PagePlan:
    """One page, checked and its marker resolved, ready to read in full or as its keys."""

    pages: PreparedPages
    engine: Engine
    variant: str
    args: dict[str, Any]
    shape: tuple[Any, ...]
    limit: int
    sort_key: str
    sort_dir: str

    def rows(self) -> Page[Any]:
        """The page's rows as the DBAPI returned them (every column of the base SELECT)."""
        return self._read("page")

    def keys(self) -> Page[Any]:
        """The same page as just its key columns (``PreparedPages.key_columns``), as the
        DBAPI returned them: a narrow, cheap read of which rows, in which state."""
        return self._read("keys")

    def _read(self, kind: str) -> Page[Any]:
        items = self.pages._get((kind, *self.shape)).fetch(self.engine, self.args)
        return Page(items=items, limit=self.limit, sort_key=self.sort_key, sort_dir=self.sort_dir)

    def key_of(self, raw: Any) -> tuple[Any, ...]:
        """A row of :meth:`rows` cut down to what :meth:`keys` gives for it."""
        return self.pages._key_getter(self.engine, self.variant)(raw)


class PreparedPages:
    def __init__(
        self, model: Any, base: Callable[[str], Select[Any]], key_columns: Sequence[str] = ("uuid",)
    ) -> None:
        """``base(variant)``: the SELECT of the rows that variant may list. ``key_columns``:
        the keys of its selected columns that :meth:`PagePlan.keys` reads (the first one
        the uuid)."""
        self.model = model
        self.columns = model.__table__.columns
        self.key_columns = tuple(key_columns)
        self._base = base
        self._prepared: dict[tuple[Any, ...], Prepared] = {}
        self._getters: dict[tuple[str, str], Callable[[Any], tuple[Any, ...]]] = {}

    def page(
        self, engine: Engine, variant: str, params: Mapping[str, Any], *, limit: int | None,
        marker: str | None, sort_key: str, sort_dir: str, max_limit: int, label: str,
    ) -> Page[Any]:  # fmt: skip
        """One page of raw rows. Raises Invalid for bad parameters, NotFound for an unknown
        marker (one the variant cannot list, too)."""
        return self.plan(
            engine, variant, params, limit=limit, marker=marker, sort_key=sort_key, sort_dir=sort_dir,
            max_limit=max_limit, label=label,
        ).rows()  # fmt: skip

    def plan(
        self, engine: Engine, variant: str, params: Mapping[str, Any], *, limit: int | None,
        marker: str | None, sort_key: str, sort_dir: str, max_limit: int, label: str,
    ) -> PagePlan:  # fmt: skip
        """:meth:`page`, checked (and the marker looked up) but not read yet. Raises as
        :meth:`page` does."""
        eff = effective_limit(
            self.model, limit=limit, sort_key=sort_key, sort_dir=sort_dir, max_limit=max_limit
        )
        args = {**params, "page_limit": eff}
        ref_null = False
        if marker is not None:
            if not is_uuid(marker):
                raise Invalid(
                    f"Invalid input for field/attribute marker. Value: '{marker}'. Expected a UUID."
                )
            found = self._get(("marker", variant)).rows(engine, {**params, "marker": marker})
            if not found:
                raise NotFound(f"{label} {marker} could not be found.")
            args["ref_val"], args["ref_id"] = found[0][sort_key], found[0]["id"]
            # A NULL sort value compares as paginate's does (``IS NULL``, not ``= NULL``).
            ref_null = args["ref_val"] is None and sort_key != "id"
        shape = (variant, sort_key, sort_dir, marker is not None, ref_null)
        return PagePlan(self, engine, variant, args, shape, eff, sort_key, sort_dir)

    def convert(self, engine: Engine, variant: str, raw: Any) -> dict[str, Any]:
        """A row of :meth:`page` by column name, as SQLAlchemy would have returned it."""
        return self._get(("page", variant, "id", "asc", False, False)).convert(engine, raw)

    def _key_getter(self, engine: Engine, variant: str) -> Callable[[Any], tuple[Any, ...]]:
        found = self._getters.get((engine.dialect.name, variant))
        if found is None:
            keys = [str(c.key) for c in self._base(variant).selected_columns]
            at = [keys.index(k) for k in self.key_columns]
            found = self._getters[(engine.dialect.name, variant)] = lambda raw: tuple(raw[i] for i in at)
        return found

    def _get(self, key: tuple[Any, ...]) -> Prepared:
        prepared = self._prepared.get(key)
        if prepared is None:
            prepared = self._prepared[key] = Prepared(self._build(key))
        return prepared

    def _build(self, key: tuple[Any, ...]) -> Select[Any]:
        stmt = self._base(key[1])
        if key[0] == "marker":
            return stmt.where(self.columns["uuid"] == bindparam("marker"))
        if key[0] == "keys":
            by_key = {str(c.key): c for c in stmt.selected_columns}
            stmt = stmt.with_only_columns(*(by_key[k] for k in self.key_columns), maintain_column_froms=True)
        _, _, sort_key, sort_dir, has_marker, ref_null = key
        if has_marker:
            ref_val = None if ref_null else bindparam("ref_val", type_=self.columns[sort_key].type)
            ref_id = bindparam("ref_id", type_=self.columns["id"].type)
            stmt = stmt.where(after(self.columns, sort_key, sort_dir, ref_val, ref_id))
        return stmt.order_by(*ordering(self.columns, sort_key, sort_dir)).limit(
            bindparam("page_limit", type_=Integer)
        )
