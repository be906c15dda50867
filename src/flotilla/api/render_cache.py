"""The rendered JSON of list rows, kept so an unchanged row is not read, converted, shaped
and encoded again on every list (most of a long list's cost)."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, Protocol, TypeVar

from flotilla.services.pagination import Page
from flotilla.services.prepared_pages import PagePlan

#: Rendered rows kept per process (then it starts over): about 1-2 KB each with its key.
MAX_RENDERED = 8192


class Keyed(Protocol):
    """A full read of one resource, with the key it renders under."""

    @property
    def key(self) -> tuple[Any, ...]: ...


F = TypeVar("F", bound=Keyed)
F_co = TypeVar("F_co", bound=Keyed, covariant=True)


class ShowSource(Protocol[F_co]):
    """One resource to show, readable as its key alone or in full (both raise the same
    errors for the same rows), e.g. :class:`flotilla.services.cluster_reads.ShowPlan`."""

    def key(self) -> tuple[Any, ...]: ...

    def found(self) -> F_co: ...


class RenderCache:
    """Rendered JSON per row, keyed by everything the rendering depends on.

    A list row is keyed by its kind, view and base URL (``scope``) and its key columns:
    the uuid and the ``row_version`` the database itself changes on every insert and
    update (migration 0007's triggers, whoever writes; a cluster's also on every insert,
    update and delete of one of its nodegroups, 0008, so its node counts need no key of
    their own). A template show's answer likewise, by the uuid and ``row_version`` of the
    row it read in full (one statement either way: reading the key alone first would
    save no round trip). So a list first reads only those narrow columns, and reads its rows
    in full only when one of them is not rendered here yet. A cluster show (:meth:`show`)
    likewise, keyed by the cluster's uuid and version and its template's version.

    Nothing can go stale: a row changed in any way, by any process, is a different key
    (its old entry is simply never asked for again). A key that cannot be hashed is
    rendered every time (no key here holds one: they are uuids and versions).
    """

    def __init__(self, max_entries: int = MAX_RENDERED) -> None:
        self.max_entries = max_entries
        self._entries: dict[Hashable, bytes] = {}
        #: The list scopes and the (scope, ident) of shows rendered here since the last
        #: clear: for any other, a list or show reads in full at once (one statement, not
        #: the narrow one and then that).
        self._warm: set[Hashable] = set()

    def __len__(self) -> int:
        """Rendered answers kept."""
        return len(self._entries)

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
                self._warm.clear()
            self._entries[key] = found
        return found

    def page(
        self, scope: Hashable, plan: PagePlan, render: Callable[[Any], bytes]
    ) -> tuple[list[bytes], Page[Any], str | None]:
        """A page's rendered rows, the page (its items the raw rows read, narrow or full)
        and the uuid of its last row.

        Reads the page's key columns (:meth:`PagePlan.keys`); if every row is rendered
        here under its key, that is the answer. Otherwise (or for a scope not rendered
        here yet) the page is read in full (:meth:`PagePlan.rows`) and answered from that
        read alone, so a row changed between the two reads is shown as the second read
        found it. ``render``: a full row to its JSON.
        """
        entries = self._entries
        if scope in self._warm:
            narrow = plan.keys()
            rows = []
            for raw in narrow.items:
                found = entries.get((scope, tuple(raw)))
                if found is None:
                    break
                rows.append(found)
            else:
                return rows, narrow, narrow.items[-1][0] if narrow.items else None
        full = plan.rows()
        key_of = plan.key_of
        rows = [self.get((scope, key_of(raw)), render, raw) for raw in full.items]
        self._warm.add(scope)
        return rows, full, key_of(full.items[-1])[0] if full.items else None

    def show(self, scope: Hashable, ident: str, source: ShowSource[F], render: Callable[[F], bytes]) -> bytes:
        """A show's rendered answer.

        For an ``ident`` shown here before under ``scope``, reads the key
        (``source.key()``) and answers what is rendered under it, if anything. Otherwise
        reads in full (``source.found()``) and answers from that read alone (rendered with
        ``render`` unless its key is rendered already), so a change between the two reads
        is shown as the second read found it. Raises what ``source`` raises.
        """
        warm = (scope, ident)
        if warm in self._warm:
            found = self._entries.get((scope, source.key()))
            if found is not None:
                return found
        full = source.found()
        out = self.get((scope, full.key), render, full)
        if len(self._warm) >= self.max_entries:
            self._entries.clear()
            self._warm.clear()
        self._warm.add(warm)
        return out
