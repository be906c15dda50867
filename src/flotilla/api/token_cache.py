"""Validated API tokens, remembered for a moment so a request costs no token lookup.

**Revocation.** An identity is answered from the cache only while less than ``ttl``
seconds (``token_cache_seconds``, default 2) have passed since the *start* of the
database read that validated it, and never past the token's own expiry. A read that
starts after a revocation (or expiry, or ``token-rotate-admin``) was committed sees it,
so a token revoked by any process, or by the CLI working on the database, stops working
in every process within ``ttl`` seconds. Nothing is shared between processes and
nothing needs to be: each process keeps that bound on its own, so ``--api-workers``
processes are correct together without any cross-process invalidation. The process that
revokes a token through the API drops its whole cache at once (:meth:`TokenCache.clear`),
so there it ends immediately: a lookup that started before the clear (and may have read
the row still valid) is not stored (each clear starts a new generation). ``ttl`` 0
turns the cache off (every request looks the token up).

**No burst at expiry (issue 13).** Two things keep many connections of one token from
validating it all at once when its entry runs out:

* *Single flight*: at most one lookup per token is running in the process; every
  request that needs the same token meanwhile waits for that lookup's answer (an
  identity, None, or its exception) instead of starting its own.
* *Refresh ahead*: a request that finds a token's entry past half its life (``ttl``/2
  since its read) still gets the cached identity at once, and starts one background
  lookup that replaces the entry (or drops it when the token is gone). A token in
  steady use therefore never expires from the cache while it stays valid, and the
  revocation bound above is unchanged, because the new entry is again measured from the
  start of its own read.

Where a lookup runs is the caller's choice: ``inline()`` true means on the caller's
thread (the event loop; :class:`~flotilla.api.auth.Authenticator` says so on SQLite
with an idle reader connection, a lookup there being one indexed row in tens of
microseconds), else on this cache's few worker threads. A leader's lookup runs in a
copy of its request's context, so ``debug_sql_count`` counts it for that request;
background refreshes count for none.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime

from flotilla.context import RequestContext
from flotilla.db.models import utcnow

log = logging.getLogger(__name__)

#: More distinct live tokens than this in ``ttl`` seconds: the cache starts over.
MAX_ENTRIES = 10_000
#: Share of ``ttl`` after which a request using an entry refreshes it in the background.
REFRESH_AFTER = 0.5
#: Threads running lookups that are not run inline (distinct tokens at once).
LOOKUP_THREADS = 8

#: The identity behind a token and the token's expiry (None: never), or None when the
#: token is unknown, revoked or expired. Blocking; raises on a database failure.
Lookup = Callable[[str], tuple[RequestContext, datetime | None] | None]


@dataclass(frozen=True, slots=True)
class _Entry:
    ctx: RequestContext
    #: Clock time until which the entry may be answered.
    fresh_until: float
    #: Clock time after which a request using it starts a refresh.
    refresh_after: float


class _Flight(Future[RequestContext | None]):
    """One running lookup of a token; marked running at once, so that a waiter's
    cancellation (``asyncio.wrap_future``) never cancels it for the others."""

    def __init__(self) -> None:
        super().__init__()
        self.set_running_or_notify_cancel()
        #: Requests that joined it rather than start their own lookup.
        self.joined = 0


def _never_inline() -> bool:
    return False


def _no_lookup(token: str) -> tuple[RequestContext, datetime | None] | None:
    return None


class TokenCache:
    """Per-process validated tokens with single-flight lookups (see the module docstring).

    Thread-safe; the async methods work from any event loop.
    """

    def __init__(
        self,
        ttl: float,
        lookup: Lookup = _no_lookup,
        *,
        inline: Callable[[], bool] = _never_inline,
        clock: Callable[[], float] = time.monotonic,
        threads: int = LOOKUP_THREADS,
    ) -> None:
        self.ttl = ttl
        #: Threads for lookups not run inline.
        self.threads = threads
        #: Validates a token (blocking).
        self.lookup = lookup
        #: True when a lookup may run on the caller's thread right now.
        self.inline = inline
        #: Monotonic seconds (tests set their own).
        self.clock = clock
        self._entries: dict[str, _Entry] = {}
        self._flights: dict[str, _Flight] = {}
        self._generation = 0
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        #: Lookups run (by any path): what the single-flight tests count.
        self.lookups = 0

    def get(self, token: str) -> RequestContext | None:
        """The cached identity of ``token`` if its entry is still fresh; never looks up."""
        entry = self._entries.get(token)
        if entry is None or entry.fresh_until <= self.clock():
            return None
        return entry.ctx

    async def resolve(self, token: str) -> RequestContext | None:
        """The identity of ``token`` (None: unknown, revoked or expired): from the cache,
        refreshing it ahead when due, else from the one lookup of ``token`` in flight,
        started here if there is none. Raises what the lookup raised."""
        entry = self._entries.get(token)
        if entry is not None:
            now = self.clock()
            if now < entry.fresh_until:
                if now >= entry.refresh_after and token not in self._flights:
                    self._refresh(token)
                return entry.ctx
        flight, lead = self._join(token)
        if isinstance(flight, RequestContext):
            return flight
        if lead is not None:
            if self.inline():
                self._run(token, flight, lead)
            else:  # in a copy of the request's context: its statement counter too
                self._submit(contextvars.copy_context(), token, flight, lead, False)
        if flight.done():
            return flight.result()
        return await asyncio.wrap_future(flight)  # (a cancelled waiter leaves it running)

    def resolve_blocking(self, token: str) -> RequestContext | None:
        """:meth:`resolve` for a worker thread (blocks; the lookup runs in this thread
        unless another is already looking ``token`` up)."""
        flight, lead = self._join(token)
        if isinstance(flight, RequestContext):
            return flight
        if lead is not None:
            self._run(token, flight, lead)
        return flight.result()

    def put(
        self, token: str, ctx: RequestContext, expires_at: datetime | None, *, read_at: float | None = None
    ) -> None:
        """Remember ``ctx`` as validated by a read that started at ``read_at``
        (clock time; default now) for ``ttl`` seconds from then, or until
        ``expires_at`` if that is sooner."""
        with self._lock:
            self._store(token, ctx, expires_at, self.clock() if read_at is None else read_at)

    def joined(self, token: str) -> int:
        """How many requests are waiting for the lookup of ``token`` that is running
        (0 when none is), besides the one that started it."""
        flight = self._flights.get(token)
        return flight.joined if flight is not None else 0

    def settle(self, timeout: float | None = None) -> None:
        """Wait for the lookups running now (refreshes included) to finish."""
        with self._lock:
            running = list(self._flights.values())
        wait(running, timeout)

    def clear(self) -> None:
        """Forget every entry, and the answers of lookups that are still running."""
        with self._lock:
            self._entries.clear()
            self._generation += 1

    def close(self) -> None:
        """Stop the lookup threads (after the lookups they are running)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    def _join(self, token: str) -> tuple[_Flight | RequestContext, int | None]:
        """The fresh identity, or the flight of ``token`` and, when the caller must run
        it, the generation it started in (None: someone else runs it)."""
        with self._lock:
            entry = self._entries.get(token)
            if entry is not None and self.clock() < entry.fresh_until:
                return entry.ctx, None  # stored just now by a finishing flight
            flight = self._flights.get(token)
            if flight is not None:
                flight.joined += 1
                return flight, None
            flight = self._flights[token] = _Flight()
            return flight, self._generation

    def _refresh(self, token: str) -> None:
        with self._lock:
            if token in self._flights:
                return
            flight = self._flights[token] = _Flight()
            generation = self._generation
        # A fresh context: a refresh is no request's statement.
        self._submit(contextvars.Context(), token, flight, generation, True)

    def _submit(
        self, ctx: contextvars.Context, token: str, flight: _Flight, generation: int, background: bool
    ) -> None:
        try:
            self._pool().submit(ctx.run, self._run, token, flight, generation, background)
        except RuntimeError as exc:  # the interpreter is shutting down: never leave it hanging
            with self._lock:
                self._flights.pop(token, None)
            flight.set_exception(exc)

    def _run(self, token: str, flight: _Flight, generation: int, background: bool = False) -> None:
        with self._lock:
            self.lookups += 1
        read_at = self.clock()
        try:
            found = self.lookup(token)
        except BaseException as exc:
            with self._lock:
                self._flights.pop(token, None)
            if background:
                # The entry stays until its fresh_until; a later request tries again.
                log.warning("refreshing a cached token failed: %s", exc)
            flight.set_exception(exc)  # for the requests that joined it
            return
        with self._lock:
            # Entry and flight change together: a newcomer sees one or the other.
            self._flights.pop(token, None)
            if generation == self._generation:
                if found is None:
                    self._entries.pop(token, None)
                else:
                    self._store(token, found[0], found[1], read_at)
        flight.set_result(found[0] if found is not None else None)

    def _store(self, token: str, ctx: RequestContext, expires_at: datetime | None, read_at: float) -> None:
        if self.ttl <= 0:
            return
        fresh_until = read_at + self.ttl
        if expires_at is not None:
            fresh_until = min(fresh_until, self.clock() + (expires_at - utcnow()).total_seconds())
        if fresh_until <= self.clock():
            return
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[token] = _Entry(ctx, fresh_until, read_at + self.ttl * REFRESH_AFTER)

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            with self._lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="flotilla-token")
        return self._executor
