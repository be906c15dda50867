"""Validated API tokens, remembered for a moment so a request costs no token lookup.

Each process keeps its own entries for at most ``ttl`` seconds (``token_cache_seconds``,
default 2), and never past the token's own expiry. Across processes nothing is shared,
so nothing can go stale for longer than that: a token revoked (or expired, or rotated)
in the database, by any process or by the CLI working on the database, stops working
in every process within ``ttl`` seconds. The process that revokes a token through the
API drops its whole cache at once (:meth:`TokenCache.clear`), so there it ends
immediately. ``ttl`` 0 turns the cache off.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime

from flotilla.context import RequestContext
from flotilla.db.models import utcnow

#: More distinct live tokens than this in ``ttl`` seconds: the cache starts over.
MAX_ENTRIES = 10_000


class TokenCache:
    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[RequestContext, float]] = {}
        self._lock = threading.Lock()

    def get(self, token: str) -> RequestContext | None:
        """The cached identity of ``token`` if it was validated less than ``ttl`` ago."""
        entry = self._entries.get(token)
        if entry is None:
            return None
        if entry[1] <= time.monotonic():
            with self._lock:
                self._entries.pop(token, None)
            return None
        return entry[0]

    def put(self, token: str, ctx: RequestContext, expires_at: datetime | None) -> None:
        """Remember ``ctx`` for ``ttl`` seconds, or until ``expires_at`` if that is sooner."""
        if self.ttl <= 0:
            return
        lifetime = self.ttl
        if expires_at is not None:
            lifetime = min(lifetime, (expires_at - utcnow()).total_seconds())
        if lifetime <= 0:
            return
        with self._lock:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[token] = (ctx, time.monotonic() + lifetime)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
