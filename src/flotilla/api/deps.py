"""FastAPI dependencies shared by the routers."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from anyio import CapacityLimiter
from fastapi import Depends, Request

from flotilla import safetext
from flotilla.api import microversion as mv
from flotilla.api.auth import Authenticator
from flotilla.api.render_cache import RenderCache
from flotilla.certs.keys import SecretBox
from flotilla.context import RequestContext
from flotilla.db.engine import Database
from flotilla.drivers.registry import CoeRegistry
from flotilla.errors import Invalid
from flotilla.services.clusters import Limits
from flotilla.settings import Settings

#: Worker threads for the reads that do not run on the event loop (lists; PostgreSQL
#: shows), per process. Python runs one thread at a time: more threads do not read more,
#: they only share the interpreter (and the event loop's turns) among more requests, so
#: every one of them finishes late. Eight keep a PostgreSQL round trip of some overlapped
#: with work; measured in process at 50 connections, lists of 100 on SQLite had their
#: slowest answer about 40 % sooner with 8 threads than with AnyIO's default 40.
READ_THREADS = 8
#: On SQLite, one: its driver gives up the interpreter around every row it steps, so two
#: threads reading lists at once hand the interpreter back and forth per row and each list
#: cost about three times its CPU (a list of 100: 3.4 ms alone, 10-11 ms per list at 10
#: connections with 8 threads, bench/api.py); one thread reads them back to back at their
#: own cost, the event loop still gets its turns.
SQLITE_READ_THREADS = 1
#: Worker threads for PostgreSQL's one-statement writes (a template create,
#: :func:`flotilla.api.writes.write_one`), per process. With AnyIO's 40 threads, 50
#: connections of creates kept the pool opening and closing connections beyond it, and a
#: PostgreSQL connect costs about 10 ms of CPU (SCRAM).
WRITE_THREADS = 8
#: On PostgreSQL these counts, the token lookups' and AnyIO's default thread pool's come
#: from the process's share of ``database_connections`` (:mod:`flotilla.db.budget`, whose
#: ``FULL`` are the numbers above): the pools hold a connection for every one of them.


@dataclass
class Runtime:
    """What the routers need, built once by ``create_app``."""

    settings: Settings
    db: Database
    auth: Authenticator
    coes: CoeRegistry
    limits: Limits
    box: SecretBox
    #: Called after an operation is queued (the in-process conductor looks at once).
    on_enqueue: list[Callable[[], None]] = field(default_factory=list)
    #: Rendered list rows (see :mod:`flotilla.api.reads`).
    renders: RenderCache = field(default_factory=RenderCache)
    #: The threads :func:`flotilla.api.reads.blocking` runs reads in (queued in arrival order).
    read_threads: CapacityLimiter = field(default_factory=lambda: CapacityLimiter(READ_THREADS))
    #: The threads :func:`flotilla.api.writes.write_one` runs PostgreSQL writes in.
    write_threads: CapacityLimiter = field(default_factory=lambda: CapacityLimiter(WRITE_THREADS))

    def __post_init__(self) -> None:
        api = self.db.plan.api
        if self.db.is_sqlite:
            self.read_threads.total_tokens = SQLITE_READ_THREADS
        elif api is not None:
            self.read_threads.total_tokens = api.reads
            self.write_threads.total_tokens = api.writes

    def wake(self) -> None:
        for callback in self.on_enqueue:
            callback()


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


async def context(request: Request) -> RequestContext:
    """The caller (raises Unauthorized). A cached token costs no I/O and no thread hop; a
    token's lookup is shared by every request that needs it meanwhile (single flight,
    see :mod:`flotilla.api.token_cache`)."""
    return await runtime(request).auth.identify(request.headers)  # (case-insensitive)


def version(request: Request) -> mv.Version:
    v: mv.Version = getattr(request.state, "version", mv.MIN)
    return v


async def json_body(request: Request) -> Any:
    """The JSON body; Magnum answers 400 for a non-JSON content type or bad JSON."""
    raw = await request.body()
    ctype = request.headers.get("content-type", "")
    if not raw.strip():
        return None
    if "json" not in ctype:
        raise Invalid(f'Unknown argument: "{raw[:200].decode("utf-8", "replace")}"')
    try:
        body = json.loads(raw)
    except RecursionError:
        raise Invalid(
            f"The request body is not accepted: JSON nested deeper than {safetext.MAX_DEPTH} levels."
        ) from None
    except ValueError as exc:
        raise Invalid(f"The request body is not valid JSON: {exc}.") from None
    problem = safetext.find_problem(body)
    if problem is not None:
        raise Invalid(problem.message())
    return body


def base_url(request: Request) -> str:
    """``scheme://host[:port]`` as the client addressed us (Magnum's host_url)."""
    host = request.headers.get("host")
    if host:  # (the scheme as Request.url has it, without building the whole URL)
        return f"{request.scope.get('scheme', 'http')}://{host}"
    return f"{request.url.scheme}://{request.url.netloc}"


def check_query(request: Request, allowed: set[str]) -> dict[str, str]:
    """Refuse unknown query parameters (``Unknown argument: "x"``)."""
    params = dict(request.query_params)
    for key in params:
        if key not in allowed:
            raise Invalid(f'Unknown argument: "{key}"')
    return params


def int_param(params: dict[str, str], key: str) -> int | None:
    value = params.get(key)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise Invalid(
            f"Invalid input for field/attribute {key}. Value: '{value}'. Expected an integer."
        ) from None


# FastAPI runs a plain ``def`` dependency in a worker thread: these two only read request
# state, so they are ``async`` (on the event loop, no thread hop per request).
async def _runtime_dep(request: Request) -> Runtime:
    return runtime(request)


async def _version_dep(request: Request) -> mv.Version:
    return version(request)


RuntimeDep = Annotated[Runtime, Depends(_runtime_dep)]
ContextDep = Annotated[RequestContext, Depends(context)]
VersionDep = Annotated[mv.Version, Depends(_version_dep)]
BodyDep = Annotated[Any, Depends(json_body)]
