"""Counting SQL statements per request (``debug_sql_count``; off by default).

``bench/api.py`` and the statement-count tests read how many statements one request
ran. :func:`watch` hooks an engine; :func:`counting` opens a counter for the current
context (copied into worker threads, so the request's threadpool calls add to it).
Transaction control (BEGIN, COMMIT, ROLLBACK, SAVEPOINT) is not counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import Engine, event

_box: ContextVar[list[int] | None] = ContextVar("flotilla_sql_statements", default=None)
_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


def _count(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
    box = _box.get()
    if box is not None and not statement.lstrip().upper().startswith(_CONTROL):
        box[0] += 1


def watch(engine: Engine) -> None:
    """Count ``engine``'s statements inside :func:`counting` blocks."""
    if not event.contains(engine, "before_cursor_execute", _count):
        event.listen(engine, "before_cursor_execute", _count)


@contextmanager
def counting() -> Iterator[list[int]]:
    """A one-element list holding the statements run in this context so far."""
    box = [0]
    token = _box.set(box)
    try:
        yield box
    finally:
        _box.reset(token)


def tally() -> None:
    """Count one statement run on a raw DBAPI connection (:mod:`flotilla.db.prepared`),
    which the engine's events do not see."""
    box = _box.get()
    if box is not None:
        box[0] += 1
