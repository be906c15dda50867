"""The hot reads, dispatched without FastAPI's router: pure ASGI, inside the edge middleware.

``GET /v1/{clustertemplates,baymodels,clusters,bays}``, their ``/detail`` and
``/{ident}`` are most of what clients and dashboards send. FastAPI's per-request work
for them (matching some ninety routes through its included routers, solving
dependencies, validating the returned dict against a response model) cost about
0.4 ms of CPU per request, more than the read itself. Here a split of the path picks
the same handler the FastAPI route calls (``show_response``/``list_response`` of
:mod:`flotilla.api.v1.clustertemplates` and :mod:`flotilla.api.v1.clusters`), so
the answer is the route's answer by construction: authentication, query checks,
policy, errors (a :class:`~flotilla.errors.FlotillaError` becomes the same error body
the app's handler makes; anything else propagates to the app's 500 handler, as from a
route). Everything else (other methods, paths, a ``root_path``) goes on to FastAPI.

The edge middleware around this has already normalized the path (``/v1`` prefix,
trailing slash), negotiated the microversion and set the request id and headers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from flotilla.api.errors import error_response
from flotilla.api.v1 import clusters, clustertemplates
from flotilla.errors import FlotillaError
from flotilla.services.commands import ClusterView
from flotilla.services.templates import View

Handler = Callable[[Request], Awaitable[Response]]


def _template_list(view: View) -> Handler:
    async def handle(request: Request) -> Response:
        return await clustertemplates.list_response(request, view)

    return handle


def _cluster_list(view: ClusterView, detail: bool) -> Handler:
    async def handle(request: Request) -> Response:
        return await clusters.list_response(request, view, detail=detail)

    return handle


#: ``collection`` -> (its list, its ``/detail``).
_LISTS: dict[str, tuple[Handler, Handler]] = {
    "clustertemplates": (_template_list("clustertemplate"), _template_list("clustertemplate")),
    "baymodels": (_template_list("baymodel"), _template_list("baymodel")),
    "clusters": (_cluster_list("cluster", False), _cluster_list("cluster", True)),
    "bays": (_cluster_list("bay", False), _cluster_list("bay", True)),
}


def _template_show(request: Request, ident: str, coll: str) -> Awaitable[Response]:
    view: View = "clustertemplate" if coll == "clustertemplates" else "baymodel"
    return clustertemplates.show_response(request, ident, view)


def _cluster_show(request: Request, ident: str, coll: str) -> Awaitable[Response]:
    return clusters.show_response(request, ident, "cluster" if coll == "clusters" else "bay")


_SHOWS: dict[str, Callable[[Request, str, str], Awaitable[Response]]] = {
    "clustertemplates": _template_show,
    "baymodels": _template_show,
    "clusters": _cluster_show,
    "bays": _cluster_show,
}


class ReadLane:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and not scope.get("root_path"):
            parts = scope["path"].split("/")
            # ["", "v1", collection] or ["", "v1", collection, ident-or-detail]
            if 3 <= len(parts) <= 4 and parts[0] == "" and parts[1] == "v1" and parts[2] in _LISTS:
                request = Request(scope, receive)
                coll = parts[2]
                try:
                    if len(parts) == 3:
                        response = await _LISTS[coll][0](request)
                    elif parts[3] == "detail":
                        response = await _LISTS[coll][1](request)
                    elif parts[3]:
                        response = await _SHOWS[coll](request, parts[3], coll)
                    else:  # an empty ident: the router's 404
                        await self.app(scope, receive, send)
                        return
                except FlotillaError as exc:
                    response = error_response(exc.http_status, exc.message)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
