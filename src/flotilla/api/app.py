"""The app factory: routers, auth, the edge middleware and the one error mapping."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from flotilla import __version__
from flotilla.api import cluster_images as cluster_images_api
from flotilla.api.auth import Authenticator
from flotilla.api.deps import Runtime
from flotilla.api.errors import error_response
from flotilla.api.fastlane import ReadLane
from flotilla.api.local import router as local_router
from flotilla.api.local_tokens import router as local_tokens_router
from flotilla.api.middleware import FRAMEWORK_ERROR_MARK, EdgeMiddleware
from flotilla.api.openapi import describe as describe_openapi
from flotilla.api.sqlcount import SqlCountMiddleware
from flotilla.api.v1 import certificates as certificates_api
from flotilla.api.v1 import clusters, clustertemplates, mservices, nodegroups, quotas, root, stats
from flotilla.api.writelane import WriteLane
from flotilla.conductor.providers import ProviderPool
from flotilla.db.budget import ProcessPlan
from flotilla.db.engine import Database
from flotilla.drivers.registry import CoeRegistry
from flotilla.errors import FlotillaError
from flotilla.services import bootstrap, certificates
from flotilla.services.clusters import Limits
from flotilla.services.limits import remembered
from flotilla.settings import Settings
from flotilla.web import routes as web_routes

log = logging.getLogger(__name__)


def create_app(
    settings: Settings, db: Database | None = None, *, read_lane: bool = True, write_lane: bool = True,
    plan: ProcessPlan | None = None,
) -> FastAPI:  # fmt: skip
    """Build the ASGI app. Migrates the schema (idempotent); starts no background work.

    ``read_lane``: serve the hot reads through :class:`~flotilla.api.fastlane.ReadLane`
    (the same handlers the routes call, without the router); ``write_lane``: the template
    creates through :class:`~flotilla.api.writelane.WriteLane`. Off only to compare.
    ``plan``: this process's threads and PostgreSQL pools for the Database made here
    when ``db`` is None (:mod:`flotilla.db.budget`).
    """
    database = db or Database(settings, plan)
    bootstrap.prepare_database(database)
    runtime = Runtime(
        settings=settings,
        db=database,
        auth=Authenticator(settings, database),
        coes=CoeRegistry.from_names(settings.enabled_coe_drivers),
        limits=Limits.from_settings(
            settings, volume_capacity_gb=remembered(ProviderPool(settings).max_volume_gb)
        ),
        box=certificates.secret_box(settings),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        api = database.plan.api
        if not database.is_sqlite and api is not None:
            # The routes' threads (plain ``def`` routes, PostgreSQL write transactions): no
            # more than the pools keep a connection for (AnyIO's default is 40).
            to_thread.current_default_thread_limiter().total_tokens = api.routes
        yield
        runtime.auth.close()
        if db is None:
            database.dispose()

    app = FastAPI(
        title="Flotilla",
        version=__version__,
        description="Container clusters on demand, speaking OpenStack Magnum's v1 API.",
        lifespan=lifespan,
        redirect_slashes=False,
    )
    app.state.runtime = runtime
    app.include_router(root.router)
    app.include_router(clustertemplates.clustertemplates_router)
    app.include_router(clustertemplates.baymodels_router)
    app.include_router(nodegroups.router)
    app.include_router(clusters.clusters_router)
    app.include_router(clusters.bays_router)
    app.include_router(certificates_api.router)
    app.include_router(quotas.router)
    app.include_router(stats.router)
    app.include_router(mservices.router)
    app.include_router(web_routes.router)
    describe_openapi(app)
    app.include_router(local_router)
    app.include_router(local_tokens_router)
    app.include_router(cluster_images_api.router)
    _install_error_handlers(app)
    if write_lane:  # innermost: a GET meets the read lane first
        app.add_middleware(WriteLane)
    if read_lane:  # inside the edge middleware, which sees every request first
        app.add_middleware(ReadLane)
    app.add_middleware(EdgeMiddleware, max_body_bytes=settings.max_request_body_bytes)
    if settings.debug_sql_count:
        app.add_middleware(SqlCountMiddleware)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FlotillaError)
    async def _flotilla_error(request: Request, exc: FlotillaError) -> JSONResponse:
        return error_response(exc.http_status, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Routing-level 404/405: Magnum answers these without the microversion headers.
        headers = {**(getattr(exc, "headers", None) or {}), FRAMEWORK_ERROR_MARK: "1"}
        return error_response(exc.status_code, "", code="", headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        return error_response(400, f"Invalid input for {where}: {first.get('msg', 'invalid value')}.")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        rid = getattr(request.state, "request_id", "")
        log.exception("unexpected error in %s %s (%s)", request.method, request.url.path, rid)
        return error_response(500, f"Internal error ({type(exc).__name__}); see the server log for {rid}.")
