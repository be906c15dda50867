"""A backstop under every ORM write: no value that could not be served back is flushed.

The API edge already refuses such input with a precise 400 (``api.deps.json_body``);
this catches any other path (a PATCH literal, the dashboard, a future route), so a
stored row can never make later lists, shows or notifications fail to serialize.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.orm import Session

from flotilla import safetext
from flotilla.errors import Invalid


def refuse_unstorable(session: Session, flush_context: Any, instances: Any) -> None:
    """``before_flush`` hook: raises ``Invalid`` (400) for a NUL, a lone surrogate or
    over-deep JSON in any new or changed column value; the transaction then rolls back."""
    for obj in (*session.new, *session.dirty):
        state = inspect(obj)
        for attr in state.mapper.column_attrs:
            for value in state.attrs[attr.key].history.added:
                _check(attr.key, value)


def refuse_unstorable_values(values: Mapping[str, Any]) -> None:
    """The same check for a row written without the ORM's flush (a Core insert)."""
    for key, value in values.items():
        if value is None or type(value) in _PLAIN:  # nothing to look at (most columns)
            continue
        _check(key, value)


#: Value types that hold no text.
_PLAIN = frozenset({bool, int, float, datetime})


def _check(key: str, value: Any) -> None:
    problem = safetext.find_problem(value)
    if problem is not None:
        raise Invalid(problem.message(f"The value of {key}"))
