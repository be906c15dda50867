"""Jinja2 rendering for the dashboard: one environment, a few display filters, safe headers.

Only presentation lives here (how a status, a time or a duration reads); every fact
shown comes from ``flotilla.services``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from flotilla import __version__
from flotilla.lifecycle import FAILED, IN_PROGRESS

TEMPLATE_DIR = Path(__file__).with_name("templates")

#: Sent with every dashboard page: no framing, no inline script, nothing cached.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

_IN_PROGRESS = {s.value for s in IN_PROGRESS}
_FAILED = {s.value for s in FAILED}


def status_class(status: str | None) -> str:
    """CSS class of a status badge: ok / busy / bad / idle."""
    if not status:
        return "idle"
    if status in _IN_PROGRESS:
        return "busy"
    if status in _FAILED or status == "UNHEALTHY":
        return "bad"
    if status.endswith("_COMPLETE") or status == "HEALTHY":
        return "ok"
    return "idle"


def is_running(status: str | None) -> bool:
    return status in _IN_PROGRESS


def is_failed(status: str | None) -> bool:
    return status in _FAILED


def duration(seconds: float | None) -> str:
    """``65.2`` -> ``"1 min 05 s"``, ``3.25`` -> ``"3.2 s"``, ``None`` -> ``"-"``."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{max(0.0, seconds):.1f} s"
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def when(value: datetime | None) -> str:
    """An absolute UTC time, to the second."""
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(value: datetime | None) -> str:
    if value is None:
        return "-"
    seconds = (datetime.now(UTC) - value).total_seconds()
    return "just now" if seconds < 10 else f"{duration(seconds)} ago"


def labels_text(labels: dict[str, Any] | None) -> str:
    """Labels the way the CLI takes them: ``k=v,k2=v2``."""
    return ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items()))


def pairs(options: Iterable[str | tuple[str, str]], current: str = "") -> list[tuple[str, str]]:
    """Select options as ``(value, text)``; a current value not among them is kept (shown as is)."""
    out = [(o, o) if isinstance(o, str) else (o[0], o[1]) for o in options]
    if current and current not in {v for v, _ in out}:
        out.append((current, current))
    return out


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        status_class=status_class,
        duration=duration,
        when=when,
        ago=ago,
        labels_text=labels_text,
        pairs=pairs,
    )
    env.globals.update(is_running=is_running, is_failed=is_failed, version=__version__)
    return env


ENV = _environment()


def page(request: Request, template: str, status_code: int = 200, /, **values: Any) -> HTMLResponse:
    """Render ``templates/<template>`` with ``values`` plus ``request`` and the viewer (if any)."""
    values.setdefault("viewer", getattr(request.state, "dashboard_viewer", None))
    values.setdefault("active", "")
    values.setdefault("notice", None)
    html = ENV.get_template(template).render(request=request, **values)
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


def redirect(url: str) -> RedirectResponse:
    """303 See Other: after a POST the browser GETs ``url``."""
    return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})
