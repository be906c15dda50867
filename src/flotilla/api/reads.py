"""What the read endpoints share: where their blocking database read runs, and the JSON.

* :func:`blocking` runs a short read (a show) inline on the event loop on SQLite: one
  local indexed lookup, tens of microseconds, cheaper than the hop to a worker thread and
  back, and a WAL reader never waits for a writer. Only with an idle pooled connection
  at hand, and never a list: a list of 1,000 rows holds the CPU for milliseconds, and
  inline it would hold every other request behind it, where from a worker thread the
  loop still gets its turns (the interpreter switches threads every 5 ms). PostgreSQL
  reads (a network round trip) always go to a worker thread. Those threads are few
  (:data:`~flotilla.api.deps.READ_THREADS`): Python runs one at a time anyway, and with
  AnyIO's 40 every list at 50 connections shared the interpreter with 39 others and the
  event loop, so each took as long as the slowest (issue 13's tail).
* :func:`json_response` renders with pydantic-core's serializer: the bytes FastAPI's
  own ``dict[str, Any]`` response model produced for these routes before (compact, UTF-8,
  the same escapes), without the model validation pass.
* :func:`page_json` puts a list page together from rows rendered one by one (and kept:
  :class:`~flotilla.api.render_cache.RenderCache`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from anyio import to_thread
from pydantic_core import to_json
from starlette.responses import Response

from flotilla.api.deps import Runtime

T = TypeVar("T")


async def blocking(rt: Runtime, fn: Callable[..., T], *args: Any, short: bool = False) -> T:
    """``fn(*args)``: inline when ``short`` and the database is SQLite, else in one of
    the reads' worker threads (:data:`~flotilla.api.deps.READ_THREADS`, waiting in
    arrival order for one)."""
    # Inline only with an idle pooled connection at hand: waiting for one (every connection
    # busy in worker threads) must not stall the event loop.
    if short and rt.db.reader_idle():
        return fn(*args)
    return await to_thread.run_sync(fn, *args, limiter=rt.read_threads)


def json_response(content: Any, status_code: int = 200) -> Response:
    """``content`` as JSON; ``bytes`` are taken as already encoded."""
    body = content if isinstance(content, bytes) else to_json(content)
    return Response(body, status_code=status_code, media_type="application/json")


def page_json(collection: str, rows: list[bytes], next_url: str | None) -> bytes:
    """``{"<collection>": [rows...], "next": ...}`` as :func:`json_response` would encode it."""
    tail = b',"next":' + to_json(next_url) if next_url is not None else b""
    return b"".join((b'{"', collection.encode(), b'":[', b",".join(rows), b"]", tail, b"}"))
