"""Authentication strategies: ``token`` (default), ``keystone`` and ``noauth`` (development only)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from flotilla.api.token_cache import TokenCache
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
        #: Validated ``token``-strategy tokens (see :mod:`flotilla.api.token_cache`).
        self.cache = TokenCache(settings.token_cache_seconds)
        self._keystone: KeystoneValidator | None = None
        if self.strategy == "keystone":
            from flotilla.api.keystone import KeystoneValidator

            self._keystone = KeystoneValidator(settings.keystone)
        elif self.strategy == "noauth":
            log.warning(
                "auth_strategy=noauth: EVERY REQUEST IS TRUSTED AS ADMIN (or as the X-User-Id/X-Project-Id/"
                "X-Roles headers it sends). Use this for development only, never on a shared machine."
            )

    def cached(self, headers: dict[str, str]) -> RequestContext | None:
        """The caller from the token cache alone (no I/O; safe on the event loop), or None:
        then call :meth:`authenticate`."""
        if self.strategy != "token":
            return None
        token = headers.get("x-auth-token")
        return self.cache.get(token) if token else None

    def authenticate(self, headers: dict[str, str]) -> RequestContext:
        """Blocking (database or Keystone call): run it in a worker thread."""
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
            raise Unauthorized("Authentication required: send an X-Auth-Token header.")
        if self._keystone is not None:
            ctx = self._keystone.identify(token)
        else:
            ctx = self.cache.get(token)
            if ctx is None:
                with self.db.reader() as session:
                    found = tokens.resolve_until(session, token)
                if found is not None:
                    ctx = found[0]
                    self.cache.put(token, ctx, found[1])
        if ctx is None:
            raise Unauthorized(
                "The request you have made requires authentication: the token is invalid or expired."
            )
        return ctx
