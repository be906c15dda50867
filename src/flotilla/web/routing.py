"""The dashboard's route class: errors become pages, a missing session becomes a login redirect.

The API answers errors in Magnum's JSON body (``api/app.py``); a person in a browser
gets the same message as an HTML page with the same status code instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute

from flotilla.errors import FlotillaError
from flotilla.web.render import SECURITY_HEADERS, page, redirect

log = logging.getLogger(__name__)

LOGIN_PATH = "/dashboard/login"


class LoginRequired(Exception):
    """No valid dashboard session: send the browser to the login form."""

    def __init__(self, *, expired: bool = False) -> None:
        super().__init__("login required")
        self.expired = expired


class CsrfFailed(Exception):
    """A POST without the form's CSRF token (or with a stale one)."""


def login_url(request: Request, *, expired: bool = False) -> str:
    target = request.url.path
    if request.method != "GET" or not target.startswith("/dashboard"):
        target = "/dashboard/clusters"
    elif request.url.query:
        target += "?" + request.url.query
    url = f"{LOGIN_PATH}?next={quote(target, safe='/')}"
    return url + ("&expired=1" if expired else "")


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class DashboardRoute(APIRoute):
    """Wraps every dashboard handler (dependencies included) to turn errors into pages."""

    def get_route_handler(self) -> Handler:
        inner = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                response = await inner(request)
            except LoginRequired as exc:
                if request.headers.get("accept", "").startswith("text/event-stream"):
                    return Response("login required", status_code=401, media_type="text/plain")
                response = redirect(login_url(request, expired=exc.expired))
            except CsrfFailed:
                response = page(
                    request, "error.html", 403, title="Form expired",
                    message="This form was sent without its security token, or the token is stale. "
                    "Go back, reload the page and try again.",
                )  # fmt: skip
            except FlotillaError as exc:
                response = page(
                    request, "error.html", exc.http_status, title=_title(exc.http_status), message=exc.message
                )
            _set_pending_cookies(request, response)
            return response

        return handler


def _title(status: int) -> str:
    return {
        400: "Invalid request",
        401: "Not signed in",
        403: "Not allowed",
        404: "Not found",
        409: "Conflict",
        503: "Service unavailable",
    }.get(status, "Error")


def _set_pending_cookies(request: Request, response: Response) -> None:
    """Cookies chosen while handling the request (the CSRF seed) go on whatever response left."""
    for args in getattr(request.state, "dashboard_cookies", []):
        response.set_cookie(**args)
    for header, value in SECURITY_HEADERS.items():
        if header not in response.headers and response.media_type == "text/html":
            response.headers[header] = value


def new_router() -> APIRouter:
    """A router whose routes are :class:`DashboardRoute` (paths relative to ``/dashboard``)."""
    return APIRouter(route_class=DashboardRoute, include_in_schema=False)
