"""The rendered JSON of list rows, kept so an unchanged row is not converted, shaped and
encoded again on every list (most of a long list's cost)."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

#: Rendered rows kept per process (then it starts over): about 1-2 KB each with its key.
MAX_RENDERED = 8192


class RenderCache:
    """Rendered JSON per list row, keyed by everything the rendering depends on: the kind
    and view, the base URL (links) and the row's raw values as the database returned them.

    Nothing can go stale: a row changed in any way, by any process, is a different key
    (its old entry is simply never asked for again). Raw values that cannot be a key
    (PostgreSQL hands JSON columns back parsed, as dicts) are rendered every time.
    """

    def __init__(self, max_entries: int = MAX_RENDERED) -> None:
        self.max_entries = max_entries
        self._entries: dict[Hashable, bytes] = {}

    def get(self, key: Hashable, render: Callable[[Any], bytes], raw: Any) -> bytes:
        """The cached JSON under ``key``, else ``render(raw)`` (then cached)."""
        try:
            found = self._entries.get(key)
        except TypeError:  # an unhashable raw value
            return render(raw)
        if found is None:
            found = render(raw)
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key] = found
        return found
