"""Authentication strategies: ``token`` (default), ``keystone`` and ``noauth`` (development only)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from flotilla.api.token_cache import LOOKUP_THREADS, TokenCache
from flotilla.context import RequestContext
from flotilla.db.engine import Database
from flotilla.errors import Unauthorized
from flotilla.services import tokens
from flotilla.settings import Settings

if TYPE_CHECKING:
    from flotilla.api.keystone import KeystoneValidator

log = logging.getLogger(__name__)


class Authenticator:
    """Turns request headers into a :class:`RequestContext` or raises Unauthorized."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.strategy = settings.auth_strategy
        self.db = db
        self._keystone: KeystoneValidator | None = None
        if self.strategy == "keystone":
            from flotilla.api.keystone import KeystoneValidator

            keystone = self._keystone = KeystoneValidator(settings.keystone)

            def identify(token: str) -> tuple[RequestContext, datetime | None] | None:
                ctx = keystone.identify(token)
                return (ctx, None) if ctx is not None else None

            #: Keystone's validator caches on its own: here only the single flight (ttl 0).
            self.cache = TokenCache(0, identify)
        else:
            #: Validated ``token``-strategy tokens, looked up once per token at a time (see
            #: :mod:`flotilla.api.token_cache`): inline on the event loop when the lookup is a
            #: local SQLite read with an idle connection at hand, else in a worker thread.
            # On PostgreSQL as many lookup threads as the process's plan keeps connections for.
            self.cache = TokenCache(
                settings.token_cache_seconds, lambda token: tokens.lookup(db, token), inline=db.reader_idle,
                threads=db.plan.api.lookups if db.plan.api is not None and not db.is_sqlite else LOOKUP_THREADS,
            )  # fmt: skip
        if self.strategy == "noauth":
            log.warning(
                "auth_strategy=noauth: EVERY REQUEST IS TRUSTED AS ADMIN (or as the X-User-Id/X-Project-Id/"
                "X-Roles headers it sends). Use this for development only, never on a shared machine."
            )

    def cached(self, headers: Mapping[str, str]) -> RequestContext | None:
        """The caller from the token cache alone (no I/O; safe on the event loop), or None:
        then call :meth:`identify` or :meth:`authenticate`."""
        if self.strategy != "token":
            return None
        token = headers.get("x-auth-token")
        return self.cache.get(token) if token else None

    async def identify(self, headers: Mapping[str, str]) -> RequestContext:
        """The caller of a request (``headers``: any case-insensitive or lower-cased
        mapping). Raises Unauthorized; on the event loop (a lookup blocks it only when
        that is cheaper than a thread hop, see :class:`TokenCache`)."""
        if self.strategy == "noauth":
            return self.authenticate(headers)
        token = headers.get("x-auth-token")
        if not token:
            raise Unauthorized(_REQUIRED)
        return _known(await self.cache.resolve(token))

    def authenticate(self, headers: Mapping[str, str]) -> RequestContext:
        """:meth:`identify` for a worker thread (blocking: a database or Keystone call)."""
        if self.strategy == "noauth":
            roles = frozenset(
                r.strip().lower() for r in headers.get("x-roles", "admin").split(",") if r.strip()
            )
            return RequestContext(
                user_id=headers.get("x-user-id", "admin"),
                project_id=headers.get("x-project-id", "admin"),
                roles=roles,
            )
        token = headers.get("x-auth-token")
        if not token:
            raise Unauthorized(_REQUIRED)
        return _known(self.cache.resolve_blocking(token))

    def close(self) -> None:
        self.cache.close()


_REQUIRED = "Authentication required: send an X-Auth-Token header."


def _known(ctx: RequestContext | None) -> RequestContext:
    if ctx is None:
        raise Unauthorized(
            "The request you have made requires authentication: the token is invalid or expired."
        )
    return ctx
