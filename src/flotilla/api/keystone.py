"""``auth_strategy = keystone``: validate ``X-Auth-Token`` against a real Keystone.

The validation itself is OpenStack's own ``keystonemiddleware.auth_token`` (the same code
Magnum runs), used as a library: one ``AuthProtocol`` wraps a tiny WSGI app that records
the identity headers the middleware sets, and each :meth:`KeystoneValidator.identify` call
pushes a synthetic WSGI request carrying only the token through it. The result is turned
into a :class:`~flotilla.context.RequestContext`.

How the middleware is set up, and why:

* ``delay_auth_decision`` is **off**. With it on, the middleware folds "Keystone cannot be
  reached" into ``X-Identity-Status: Invalid``, indistinguishable from a bad token. Off, the
  three outcomes are distinct: the inner app is reached (token valid), a 401 (token invalid
  or expired), a 503 (Keystone unreachable, or it refused our service credentials).
* The service credentials (``auth_type = password``) come from :class:`KeystoneSettings`;
  the identity endpoint used to validate is found in the catalog (``interface = internal``,
  keystonemiddleware's default, as in Magnum's own ``[keystone_authtoken]``).
* Options live in a private ``oslo.config`` object, never the process-wide ``cfg.CONF``,
  so several validators (tests, reloads) do not interfere.
* Validated tokens are cached in memory for :data:`TOKEN_CACHE_SECONDS` (never past the
  token's own expiry). Consequences: a revoked token keeps working until its cache entry
  ages out, and tokens seen recently keep working while Keystone is down; unseen tokens
  then raise :class:`~flotilla.errors.Unavailable`. Invalid tokens are not cached.
* Tokens of application credentials restricted by access rules are refused (the synthetic
  request has no real method/path to check the rules against).

``identify`` blocks on HTTP to Keystone: call it from a worker thread.
"""

from __future__ import annotations

import importlib
import io
import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from flotilla.context import RequestContext
from flotilla.errors import Unauthorized, Unavailable
from flotilla.settings import KeystoneSettings

LOG = logging.getLogger(__name__)

#: How long a validated token is trusted without asking Keystone again (seconds).
TOKEN_CACHE_SECONDS = 300
#: How many validated tokens the in-memory cache holds (least recently used go first).
TOKEN_CACHE_SIZE = 10_000
#: Connect/read timeout for each call to Keystone (seconds).
HTTP_TIMEOUT_SECONDS = 30
#: Extra attempts when Keystone cannot be connected to (keystoneauth backs off 0.5 s).
HTTP_RETRIES = 1
#: Longer values are not tokens; refused without asking Keystone.
MAX_TOKEN_LENGTH = 8192

_GROUP = "keystone_authtoken"
_CACHE_ENV_KEY = "flotilla.keystone.token_cache"
_RESULT_ENV_KEY = "flotilla.keystone.identity"
_INSTALL_HINT = "auth_strategy=keystone needs keystonemiddleware: pip install 'flotilla[keystone]'"

Environ = dict[str, Any]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]


class _KeystoneDown(Exception):
    """Raised through the middleware when the token could not be checked at all."""


class _TokenCache:
    """Thread-safe, bounded, in-memory stand-in for a memcache client.

    keystonemiddleware accepts any object with ``get(key)`` / ``set(key, value, time=)``
    passed in the WSGI environ (its ``cache`` option); its own in-process fallback is
    deprecated and keeps one dict per pooled client.
    """

    def __init__(self, max_entries: int = TOKEN_CACHE_SIZE) -> None:
        self._max = max_entries
        self._lock = threading.Lock()
        self._data: OrderedDict[str, tuple[float, Any]] = OrderedDict()

    def get(self, key: str) -> Any:
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                return None
            expires, value = entry
            if expires and _now() >= expires:
                del self._data[key]
                return None
            self._data.move_to_end(key)
            return value

    def set(self, key: str, value: Any, time: float = 0, **_: Any) -> bool:  # memcache-client signature
        expires = _now() + time if time else 0.0
        with self._lock:
            self._data[key] = (expires, value)
            self._data.move_to_end(key)
            while len(self._data) > self._max:
                self._data.popitem(last=False)
        return True

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)


def _now() -> float:
    return time.monotonic()


def _capture_app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """The app behind the middleware: reached only for a valid token; keeps its headers."""
    holder: dict[str, str] = environ[_RESULT_ENV_KEY]
    # Absent values (e.g. the project of an unscoped token) are set as None.
    holder.update({k: str(v) for k, v in environ.items() if k.startswith("HTTP_X_") and v is not None})
    start_response("204 No Content", [])
    return []


class _DropInProcessCacheWarning(logging.Filter):
    """keystonemiddleware warns that its in-process cache is deprecated whenever no
    memcached servers are set, even though the cache used is ours (:class:`_TokenCache`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Using the in-process token cache is deprecated")


_cache_warning_filter = _DropInProcessCacheWarning()


def _describe(exc: BaseException | None) -> str:
    """A one-line reason from the error keystonemiddleware wrapped into its 503."""
    while exc is not None:
        text = str(exc).strip()
        if text:
            return f"{type(exc).__name__}: {text}"
        exc = exc.__cause__ or exc.__context__
    return "no details"


def _plausible_token(token: str) -> bool:
    return 0 < len(token) <= MAX_TOKEN_LENGTH and token.isascii() and token.isprintable() and " " not in token


class KeystoneValidator:
    """Turns a Keystone token into a :class:`RequestContext` (thread-safe)."""

    def __init__(self, settings: KeystoneSettings) -> None:
        try:
            from keystoneauth1 import exceptions as ksa_exceptions
            from keystoneauth1 import loading
            from keystonemiddleware import auth_token
            from oslo_config import cfg

            # webob (keystonemiddleware's dependency) has no type stubs.
            service_unavailable: type[Exception] = importlib.import_module("webob.exc").HTTPServiceUnavailable
        except ImportError as exc:
            raise Unavailable(_INSTALL_HINT) from exc

        self.settings = settings
        self.auth_url = settings.auth_url.rstrip("/")
        self._cache = _TokenCache()
        self._ksa_error: type[Exception] = ksa_exceptions.ClientException

        # The password plugin's options are registered here and given values through
        # oslo.config; the middleware's own options go through the ``conf`` dict (its
        # "paste overrides"), which only knows the [keystone_authtoken] options.
        conf = cfg.ConfigOpts()
        conf.register_opts(loading.get_auth_plugin_conf_options("password"), group=_GROUP)
        for name, value in {
            "auth_url": self.auth_url,
            "username": settings.username,
            "password": settings.password,
            "project_name": settings.project_name,
            "user_domain_name": settings.user_domain_name,
            "project_domain_name": settings.project_domain_name,
        }.items():
            conf.set_override(name, value, group=_GROUP)

        middleware_logger = logging.getLogger(auth_token.__name__)
        if _cache_warning_filter not in middleware_logger.filters:
            middleware_logger.addFilter(_cache_warning_filter)

        class _Protocol(auth_token.AuthProtocol):  # type: ignore[misc]
            """Keeps the reason Keystone could not be asked, which the 503 drops."""

            def fetch_token(self, token: str, **kwargs: Any) -> Any:
                try:
                    return super().fetch_token(token, **kwargs)
                except service_unavailable as exc:
                    raise _KeystoneDown(_describe(exc.__context__)) from exc

        self._protocol: WSGIApp = _Protocol(
            _capture_app,
            {
                "oslo_config_config": conf,
                "auth_type": "password",
                "www_authenticate_uri": settings.www_authenticate_uri or self.auth_url,
                "delay_auth_decision": False,
                "include_service_catalog": False,
                "cache": _CACHE_ENV_KEY,
                "token_cache_time": TOKEN_CACHE_SECONDS,
                "http_connect_timeout": HTTP_TIMEOUT_SECONDS,
                "http_request_max_retries": HTTP_RETRIES,
            },
        )

    def identify(self, token: str) -> RequestContext | None:
        """Who the token belongs to; ``None`` if it is invalid, expired or revoked.

        Raises :class:`Unavailable` when Keystone cannot be asked (unreachable, timing
        out, or refusing the service credentials) and :class:`Unauthorized` for a valid
        token that is not scoped to a project (unscoped, domain or system scope).
        """
        if not _plausible_token(token):
            return None
        identity: dict[str, str] = {}
        status = self._run(token, identity)
        code = status.split(" ", 1)[0]
        if code == "401":
            return None
        if code == "503":
            raise self._unavailable(status)
        if not code.startswith("2") or identity.get("HTTP_X_IDENTITY_STATUS") != "Confirmed":
            raise self._unavailable(f"unexpected answer from auth_token: {status}")
        return self._context(identity, token)

    def _run(self, token: str, identity: dict[str, str]) -> str:
        environ: Environ = {
            "REQUEST_METHOD": "GET",
            "SCRIPT_NAME": "",
            "PATH_INFO": "/",
            "QUERY_STRING": "",
            "SERVER_NAME": "flotilla",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_X_AUTH_TOKEN": token,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(b""),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            _CACHE_ENV_KEY: self._cache,
            _RESULT_ENV_KEY: identity,
        }
        statuses: list[str] = []

        def start_response(status: str, headers: Any, exc_info: Any = None) -> Callable[[bytes], object]:
            statuses.append(status)
            return lambda _data: None

        try:
            body = self._protocol(environ, start_response)
            try:
                for _chunk in body:
                    pass
            finally:
                close = getattr(body, "close", None)
                if close is not None:
                    close()
        except _KeystoneDown as exc:
            raise self._unavailable(str(exc)) from exc
        except self._ksa_error as exc:  # e.g. no identity endpoint in the catalog
            raise self._unavailable(_describe(exc)) from exc
        if not statuses:
            raise self._unavailable("auth_token gave no response")
        return statuses[-1]

    def _unavailable(self, reason: str) -> Unavailable:
        LOG.warning("keystone %s: cannot validate tokens: %s", self.auth_url, reason)
        return Unavailable(
            f"Keystone cannot validate tokens right now ({self.auth_url}): {reason}. "
            "Check that Keystone is running and reachable, and the service credentials "
            "in the [keystone] settings."
        )

    @staticmethod
    def _context(identity: dict[str, str], token: str) -> RequestContext:
        user_id = identity.get("HTTP_X_USER_ID", "")
        project_id = identity.get("HTTP_X_PROJECT_ID", "")
        if not project_id:
            raise Unauthorized(
                "The token is not scoped to a project. Request a project-scoped token "
                "(for example set OS_PROJECT_NAME and OS_PROJECT_DOMAIN_NAME) and retry."
            )
        roles = frozenset(r.strip().lower() for r in identity.get("HTTP_X_ROLES", "").split(",") if r.strip())
        return RequestContext(
            user_id=user_id,
            project_id=project_id,
            roles=roles,
            user_name=identity.get("HTTP_X_USER_NAME") or None,
            project_name=identity.get("HTTP_X_PROJECT_NAME") or None,
            domain_id=identity.get("HTTP_X_USER_DOMAIN_ID") or None,
            auth_token=token,
        )
