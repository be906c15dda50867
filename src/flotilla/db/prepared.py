"""SELECTs compiled once and run on a pooled DBAPI connection: the API's hottest reads.

A template or cluster show is one indexed row. Through the ORM session it cost about
1 ms of CPU (session, identity map, statement construction, cache-key generation,
``BEGIN``/``ROLLBACK`` round trips); through :class:`Prepared` about 40 us. The SQL
text, the parameter order and the column conversions (SQLite's text dates, JSON text,
0/1 booleans; the ``UtcDateTime`` decorator) are the ones SQLAlchemy would use, taken
once per dialect from the same Core statement, so a Prepared read returns what
``session.execute(stmt)`` returns, as plain dicts by column key.

No transaction is opened: one SELECT is one snapshot on its own (SQLite, and
PostgreSQL's read engine, in autocommit mode, as :mod:`flotilla.db.engine` configures
them; on a PostgreSQL engine that is not, the pool's reset ends the implicit transaction
when the connection is returned). A read that finds its connection closed by the server
runs once more on another (:meth:`Prepared.fetch`). Each execution counts as
one statement for ``debug_sql_count`` (:func:`flotilla.db.statements.tally`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Dialect, Engine, Executable, Select
from sqlalchemy.sql.compiler import Compiled

from flotilla.db import statements

Processor = Callable[[Any], Any]


@dataclass(frozen=True)
class _Compiled:
    sql: str
    #: Parameter names in placeholder order (qmark/format styles).
    order: tuple[str, ...]
    positional: bool
    defaults: dict[str, Any]
    binders: tuple[tuple[str, Processor], ...]
    keys: tuple[str, ...]
    converters: tuple[tuple[str, Processor], ...]

    def arguments(self, params: Mapping[str, Any]) -> Any:
        values = {**self.defaults, **params}
        for name, process in self.binders:
            values[name] = process(values[name])
        if self.positional:
            return tuple(values[name] for name in self.order)
        return {name: values[name] for name in self.order}

    def row(self, raw: Any) -> dict[str, Any]:
        out = dict(zip(self.keys, raw, strict=True))
        for key, convert in self.converters:
            out[key] = convert(out[key])
        return out

    def picker(self, keys: tuple[str, ...]) -> Callable[[Any], dict[str, Any]]:
        converters = dict(self.converters)
        at = [(key, self.keys.index(key), converters.get(key)) for key in keys]

        def pick(raw: Any) -> dict[str, Any]:
            return {key: raw[i] if convert is None else convert(raw[i]) for key, i, convert in at}

        return pick


class Prepared:
    """One SELECT (built once, with ``bindparam`` placeholders) to run many times.

    The selected columns need distinct keys (label joined columns). Thread-safe: the
    per-dialect compilation is computed once and never changes.
    """

    def __init__(self, stmt: Select[Any]) -> None:
        keys = tuple(str(c.key) for c in stmt.selected_columns)
        if len(set(keys)) != len(keys):
            raise ValueError(f"selected columns need distinct keys, got {keys}")
        self.stmt = stmt
        self._compiled: dict[str, _Compiled] = {}
        self._pickers: dict[tuple[str, tuple[str, ...]], Callable[[Any], dict[str, Any]]] = {}

    def rows(self, engine: Engine, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Every row, as dicts by column key. ``params``: the bind parameters by name."""
        compiled = self._for(engine)
        return [compiled.row(raw) for raw in self.fetch(engine, params)]

    def fetch(self, engine: Engine, params: Mapping[str, Any]) -> list[Any]:
        """Every row as the DBAPI returned it (unconverted: see :meth:`convert`).

        A connection the database closed under it (a restart, an administrator's
        ``pg_terminate_backend``, found only when the statement ran) is dropped and the
        read runs once more on another: a read repeated is harmless, and the pool checks
        connections without a round trip (:func:`flotilla.db.engine.check_alive`), so this is
        how a close that lands after that check is absorbed. A second failure is raised.
        """
        compiled = self._for(engine)
        arguments = compiled.arguments(params)
        for attempt in (1, 2):
            conn = engine.raw_connection()
            try:
                cursor = conn.cursor()
                try:
                    statements.tally()
                    cursor.execute(compiled.sql, arguments)
                    return list(cursor.fetchall())
                except engine.dialect.loaded_dbapi.Error as exc:
                    if attempt == 2 or not engine.dialect.is_disconnect(exc, conn.dbapi_connection, cursor):
                        raise
                    conn.invalidate(exc)  # closed, not returned to the pool; then the second attempt
                finally:
                    cursor.close()
            finally:
                conn.close()  # back to the pool, which ends any implicit transaction
        raise AssertionError("unreachable")

    def convert(self, engine: Engine, raw: Any) -> dict[str, Any]:
        """One row of :meth:`fetch` as :meth:`rows` gives it."""
        return self._for(engine).row(raw)

    def picker(self, engine: Engine, keys: tuple[str, ...]) -> Callable[[Any], dict[str, Any]]:
        """A function turning a row of :meth:`fetch` into a dict of just ``keys`` (converted)."""
        found = self._pickers.get((engine.dialect.name, keys))
        if found is None:
            found = self._pickers[(engine.dialect.name, keys)] = self._for(engine).picker(keys)
        return found

    def _for(self, engine: Engine) -> _Compiled:
        return self._compiled.get(engine.dialect.name) or self._compile(engine.dialect)

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self.stmt.compile(dialect=dialect)
        binders, defaults = _binders(compiled, dialect)
        converters = []
        for column in self.stmt.selected_columns:
            convert = column.type.dialect_impl(dialect).result_processor(dialect, None)
            if convert is not None:
                converters.append((str(column.key), convert))
        out = _Compiled(
            sql=compiled.string,
            order=tuple(compiled.positiontup or ())
            if compiled.positional
            else tuple(compiled.bind_names.values()),
            positional=compiled.positional,
            defaults=defaults,
            binders=binders,
            keys=tuple(str(c.key) for c in self.stmt.selected_columns),
            converters=tuple(converters),
        )
        self._compiled[dialect.name] = out
        return out


def _binders(
    compiled: Compiled, dialect: Dialect
) -> tuple[tuple[tuple[str, Processor], ...], dict[str, Any]]:
    """The bind parameters' conversions by name, and the statement's own literals (a LIMIT)."""
    binders, defaults = [], {}
    for bind, name in compiled.bind_names.items():  # type: ignore[attr-defined]
        if not bind.required:  # a literal of the statement (a LIMIT, a constant)
            defaults[name] = bind.effective_value
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            binders.append((name, process))
    return tuple(binders), defaults


def _order(compiled: Compiled) -> tuple[tuple[str, ...], bool]:
    positional = bool(compiled.positional)  # type: ignore[attr-defined]
    if positional:
        return tuple(compiled.positiontup or ()), True  # type: ignore[attr-defined]
    return tuple(compiled.bind_names.values()), False  # type: ignore[attr-defined]


class PreparedWrite:
    """Any statement (an INSERT over given columns, a textual SELECT) compiled once per
    dialect, run on a DBAPI connection the caller holds, inside the caller's transaction
    (:meth:`flotilla.db.engine.Database.dbapi_now`). The SQL and the value conversions
    (JSON text, dates, booleans) are SQLAlchemy's, as for :class:`Prepared`; result rows
    come back as the DBAPI returns them (use it for plain columns).
    """

    def __init__(self, stmt: Executable, column_keys: tuple[str, ...] | None = None) -> None:
        self.stmt = stmt
        self.column_keys = column_keys
        self._compiled: dict[str, _Compiled] = {}

    def execute(self, conn: Any, dialect: Dialect, params: Mapping[str, Any]) -> list[Any]:
        """Run once with ``params`` (by name); the rows, if the statement returns any.
        Errors are the DBAPI's own (e.g. its ``IntegrityError``)."""
        compiled = self._compiled.get(dialect.name) or self._compile(dialect)
        cursor = conn.cursor()
        try:
            statements.tally()
            cursor.execute(compiled.sql, compiled.arguments(params))
            return list(cursor.fetchall()) if cursor.description is not None else []
        finally:
            cursor.close()

    def _compile(self, dialect: Dialect) -> _Compiled:
        keys = list(self.column_keys) if self.column_keys is not None else None
        compiled = self.stmt.compile(dialect=dialect, column_keys=keys)  # type: ignore[attr-defined]
        binders, defaults = _binders(compiled, dialect)
        order, positional = _order(compiled)
        out = _Compiled(
            sql=compiled.string, order=order, positional=positional, defaults=defaults, binders=binders,
            keys=(), converters=(),
        )  # fmt: skip
        self._compiled[dialect.name] = out
        return out
