"""Dashboard sessions: sign in with an API token (or a Keystone token), sign out, CSRF.

* The token is checked with the app's own :class:`~flotilla.api.auth.Authenticator`
  on every request (so a revoked token ends the session at once) and kept in an
  HttpOnly, SameSite=Strict cookie, encrypted with a key derived from the service
  secret (the same secret that protects CA keys, under another HKDF context).
* Every POST form carries ``csrf``: an HMAC of a random per-browser seed cookie and
  the session cookie, keyed by the service secret. A form from another site, or one
  kept across a sign-in or sign-out, is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from flotilla.api.deps import runtime
from flotilla.certs.keys import SecretBox, SecretError, load_or_create_secret
from flotilla.context import RequestContext
from flotilla.errors import Invalid, Unauthorized
from flotilla.services import web_sessions
from flotilla.web.render import page, redirect
from flotilla.web.routing import CsrfFailed, LoginRequired, new_router

SESSION_COOKIE = "flotilla_session"
SEED_COOKIE = "flotilla_csrf"
COOKIE_PATH = "/dashboard"
SESSION_SECONDS = 12 * 3600
MAX_FORM_BYTES = 64 * 1024


class SessionKeys:
    """The session cookie's cipher and the CSRF MAC key, derived from the service secret."""

    def __init__(self, secret: str) -> None:
        self.box = SecretBox(secret, context=b"flotilla dashboard session")
        self.mac_key = hashlib.sha256(b"flotilla dashboard csrf\0" + secret.encode()).digest()

    def seal(self, token: str, sid: str) -> str:
        return self.box.encrypt(json.dumps({"tok": token, "sid": sid, "iat": int(time.time())}).encode())

    def open(self, value: str | None) -> tuple[str, str] | None:
        """(token, session id) of a session cookie, or None when absent, forged or too old."""
        if not value:
            return None
        try:
            data = json.loads(self.box.decrypt(value))
        except (SecretError, ValueError):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("tok"), str):
            return None
        if not isinstance(data.get("sid"), str):
            return None
        if time.time() - float(data.get("iat", 0)) > SESSION_SECONDS:
            return None
        return str(data["tok"]), str(data["sid"])

    def csrf(self, seed: str, session: str) -> str:
        mac = hmac.new(self.mac_key, f"{seed}|{session}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def keys(request: Request) -> SessionKeys:
    """Built once per app (several API processes share ``secret_key``, hence the derivation)."""
    found: SessionKeys | None = getattr(request.app.state, "dashboard_keys", None)
    if found is None:
        settings = runtime(request).settings
        secret = settings.secret_key or load_or_create_secret(Path(settings.data_dir) / "secret.key")
        found = SessionKeys(secret)
        request.app.state.dashboard_keys = found
    return found


def _queue_cookie(request: Request, **args: Any) -> None:
    pending: list[dict[str, Any]] = getattr(request.state, "dashboard_cookies", [])
    pending.append(args)
    request.state.dashboard_cookies = pending


def _cookie_args(request: Request, name: str, value: str, max_age: int | None) -> dict[str, Any]:
    return {
        "key": name, "value": value, "max_age": max_age, "path": COOKIE_PATH, "httponly": True,
        "samesite": "strict", "secure": request.url.scheme == "https",
    }  # fmt: skip


def csrf_token(request: Request) -> str:
    """The token this browser's forms must send back (creates the seed cookie if needed)."""
    seed = getattr(request.state, "dashboard_seed", None) or request.cookies.get(SEED_COOKIE)
    if not seed:
        seed = secrets.token_urlsafe(24)
        _queue_cookie(request, **_cookie_args(request, SEED_COOKIE, seed, None))
    request.state.dashboard_seed = seed
    return keys(request).csrf(seed, request.cookies.get(SESSION_COOKIE, ""))


@dataclass(frozen=True)
class Viewer:
    """Who is looking at the dashboard, and the CSRF token for the forms on the page."""

    ctx: RequestContext
    csrf: str

    @property
    def can_write(self) -> bool:
        return self.ctx.can_write

    @property
    def is_admin(self) -> bool:
        return self.ctx.is_admin

    @property
    def label(self) -> str:
        user = self.ctx.user_name or self.ctx.user_id
        project = self.ctx.project_name or self.ctx.project_id
        return f"{user} @ {project}"

    @property
    def role(self) -> str:
        return "admin" if self.is_admin else "member" if self.can_write else "reader"


async def current_viewer(request: Request) -> Viewer:
    """The signed-in caller; raises :class:`LoginRequired` without a valid session."""
    opened = keys(request).open(request.cookies.get(SESSION_COOKIE))
    if opened is None:
        raise LoginRequired(expired=SESSION_COOKIE in request.cookies)
    token, sid = opened
    if not await run_in_threadpool(_session_live, request, sid):
        raise LoginRequired(expired=True)
    auth = runtime(request).auth
    try:
        ctx = await run_in_threadpool(auth.authenticate, {"x-auth-token": token})
    except Unauthorized:
        raise LoginRequired(expired=True) from None
    viewer = Viewer(ctx=ctx, csrf=csrf_token(request))
    request.state.dashboard_viewer = viewer
    return viewer


def _session_live(request: Request, sid: str) -> bool:
    with runtime(request).db.reader() as s:
        return web_sessions.is_live(s, sid)


def _start_session(request: Request) -> str:
    with runtime(request).db.session() as s:
        return web_sessions.start(s, SESSION_SECONDS)


def _end_session(request: Request, sid: str) -> None:
    with runtime(request).db.session() as s:
        web_sessions.end(s, sid)


async def checked_form(request: Request) -> dict[str, str]:
    """The POSTed form fields, after the CSRF check. Raises CsrfFailed or Invalid."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise Invalid("The dashboard accepts only HTML form posts (application/x-www-form-urlencoded).")
    raw = await request.body()
    if len(raw) > MAX_FORM_BYTES:
        raise Invalid(f"The form is too large (at most {MAX_FORM_BYTES // 1024} KiB).")
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise Invalid("The form is not valid UTF-8.") from None
    data = dict(pairs)
    sent = data.pop("csrf", "")
    if not hmac.compare_digest(sent.encode(), csrf_token(request).encode()):
        raise CsrfFailed
    return data


ViewerDep = Annotated[Viewer, Depends(current_viewer)]
FormDep = Annotated[dict[str, str], Depends(checked_form)]

router = new_router()


def _safe_next(target: str | None) -> str:
    """Only same-site dashboard paths (no ``//host`` or scheme tricks)."""
    if not target or not target.startswith("/dashboard") or target.startswith("//") or "\\" in target:
        return "/dashboard/clusters"
    return target


def _token_label(request: Request) -> str:
    strategy = runtime(request).settings.auth_strategy
    return "Keystone token" if strategy == "keystone" else "API token"


def _login_page(request: Request, status: int, error: str | None, next_url: str, expired: bool) -> Response:
    return page(
        request, "login.html", status, title="Sign in", error=error, next_url=next_url, expired=expired,
        csrf=csrf_token(request), token_label=_token_label(request),
        strategy=runtime(request).settings.auth_strategy,
    )  # fmt: skip


@router.get("/login")
def login_form(request: Request, next: str | None = None, expired: str | None = None) -> Response:
    return _login_page(request, 200, None, _safe_next(next), bool(expired))


@router.post("/login")
async def login(request: Request, form: FormDep) -> Response:
    token = form.get("token", "").strip()
    next_url = _safe_next(form.get("next"))
    if not token:
        return _login_page(request, 400, f"Enter your {_token_label(request)}.", next_url, False)
    auth = runtime(request).auth
    try:
        await run_in_threadpool(auth.authenticate, {"x-auth-token": token})
    except Unauthorized as exc:
        return _login_page(request, 401, exc.message, next_url, False)
    sid = await run_in_threadpool(_start_session, request)
    response = redirect(next_url)
    cookie = keys(request).seal(token, sid)
    response.set_cookie(**_cookie_args(request, SESSION_COOKIE, cookie, SESSION_SECONDS))
    # A fresh seed: forms rendered before the sign-in stop working.
    response.set_cookie(**_cookie_args(request, SEED_COOKIE, secrets.token_urlsafe(24), None))
    return response


@router.post("/logout")
async def logout(request: Request, form: FormDep) -> Response:
    """Ends the session server-side too: a copy of the cookie no longer signs anyone in."""
    opened = keys(request).open(request.cookies.get(SESSION_COOKIE))
    if opened is not None:
        await run_in_threadpool(_end_session, request, opened[1])
    response = redirect("/dashboard/login")
    for name in (SESSION_COOKIE, SEED_COOKIE):
        response.delete_cookie(name, path=COOKIE_PATH, httponly=True, samesite="strict")
    return response
