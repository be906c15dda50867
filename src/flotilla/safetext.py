"""What text Flotilla accepts and stores: no NUL, no lone UTF-16 surrogate, bounded nesting.

A JSON body may spell a lone surrogate (``"\\udfff"``) and Python's ``json`` decodes it
into a ``str`` that cannot be encoded as UTF-8: stored, every later response carrying
it would fail to serialize. A NUL is refused by PostgreSQL's text type. Both are
refused at the API edge (``api.deps.json_body``, the PATCH literals, the URL) and,
as a backstop, before any ORM flush (``db.engine``), so such a value is never committed.

The walk is iterative, so a deeply nested document cannot exhaust the stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Deeper JSON than this is refused: Magnum's bodies nest at most 3 or 4 levels.
MAX_DEPTH = 32


@dataclass(frozen=True)
class Problem:
    """Where (``labels.x``, ``[0].value``; empty for the whole value) and what is wrong."""

    where: str
    what: str

    def message(self, subject: str = "The request body") -> str:
        text = f"{subject} contains {self.what}, which no field accepts."
        if self.where and not self.what.startswith("JSON nested"):
            text += f" Found at {self.where}."
        return text


def char_problem(text: str) -> str | None:
    """Describe the first unacceptable character of ``text``, or None if it is fine."""
    if "\x00" in text:
        return "a NUL character (\\u0000)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"a lone UTF-16 surrogate (\\u{ord(text[exc.start]):04x}) that is not valid Unicode text"
    return None


def _key_text(key: Any) -> str:
    text = str(key)
    return text if char_problem(text) is None and len(text) <= 64 else "<key>"


def find_problem(value: Any, *, max_depth: int = MAX_DEPTH) -> Problem | None:
    """The first bad string (value or key) in a JSON-like value, or nesting past ``max_depth``.

    Containers are dicts, lists and tuples; other leaves (numbers, bools, None) are fine.
    """
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, str):
            what = char_problem(item)
            if what is not None:
                return Problem(where, what)
            continue
        if not isinstance(item, dict | list | tuple):
            continue
        if depth >= max_depth:
            return Problem(where, f"JSON nested deeper than {max_depth} levels")
        if isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and (what := char_problem(key)) is not None:
                    return Problem(where, f"a key with {what}")
                name = _key_text(key)
                stack.append((child, f"{where}.{name}" if where else name, depth + 1))
        else:
            for index, child in enumerate(item):
                stack.append((child, f"{where}[{index}]", depth + 1))
    return None
