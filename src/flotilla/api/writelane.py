"""The hot write, dispatched without FastAPI's router: pure ASGI, inside the edge middleware.

``POST /v1/clustertemplates`` and ``POST /v1/baymodels`` go straight to
:func:`flotilla.api.v1.clustertemplates.create_response`, the handler their FastAPI
routes call, so the answer is the route's by construction (authentication, the body
checks, policy, the 201 with ``Location``, errors). FastAPI's router and dependency
solving cost about a fifth of a create's CPU. A :class:`~flotilla.errors.FlotillaError`
becomes the error body the app's handler makes; anything else propagates to the app's
500 handler, as from a route. As :mod:`flotilla.api.fastlane`, which it sits beside.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from flotilla.api.errors import error_response
from flotilla.api.v1 import clustertemplates
from flotilla.errors import FlotillaError
from flotilla.services.templates import View

#: Normalized path (see :class:`~flotilla.api.middleware.EdgeMiddleware`) -> view.
_CREATES: dict[str, View] = {"/v1/clustertemplates": "clustertemplate", "/v1/baymodels": "baymodel"}


class WriteLane:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            view = _CREATES.get(scope["path"])
            if view is not None:
                response: Response
                try:
                    response = await clustertemplates.create_response(Request(scope, receive), view)
                except FlotillaError as exc:
                    response = error_response(exc.http_status, exc.message)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
