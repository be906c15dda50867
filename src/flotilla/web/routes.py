"""The dashboard (the guide's "Horizon Interface"): server-rendered pages under ``/dashboard``.

Wire it with ``app.include_router(web.routes.router)``. Every page calls the same
services as the API, with the same authentication (the session holds an API or
Keystone token, checked by the app's Authenticator) and the same policy.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Response

from flotilla.errors import NotFound
from flotilla.web import admin_pages, bundle, cluster_actions, clusters_pages, live, session, templates_pages
from flotilla.web.render import redirect
from flotilla.web.routing import DashboardRoute, new_router
from flotilla.web.session import ViewerDep

STATIC_DIR = Path(__file__).with_name("static")
#: The files served from ``/dashboard/static/`` (nothing else is reachable there).
STATIC_FILES = {"dashboard.css": "text/css; charset=utf-8", "live.js": "text/javascript; charset=utf-8"}

static = new_router()


@static.get("/static/{name}")
def static_file(name: str) -> Response:
    media_type = STATIC_FILES.get(name)
    if media_type is None:
        raise NotFound(f"No static file {name}.")
    return Response(
        (STATIC_DIR / name).read_bytes(), media_type=media_type,
        headers={"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"},
    )  # fmt: skip


router = APIRouter(prefix="/dashboard", route_class=DashboardRoute, include_in_schema=False)


@router.get("")
def home(me: ViewerDep) -> Response:
    return redirect("/dashboard/clusters")


for sub in (
    static,
    session.router,
    templates_pages.router,
    live.router,
    bundle.router,
    cluster_actions.router,
    clusters_pages.router,
    admin_pages.router,
):
    router.include_router(sub)
