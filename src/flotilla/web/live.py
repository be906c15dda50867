"""Live progress of a cluster: a snapshot (status, step, elapsed) as JSON and as
server-sent events, one every second until the operation ends.

The stream ends with an ``event: done`` message on *_COMPLETE / *_FAILED, or when the
cluster is gone after a delete (``"gone": true``); the page's script closes it then.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from flotilla.api.deps import Runtime, runtime
from flotilla.context import RequestContext
from flotilla.db import models as m
from flotilla.errors import NotFound
from flotilla.lifecycle import IN_PROGRESS
from flotilla.services import clusters, operations
from flotilla.web.render import duration, is_failed, is_running, status_class
from flotilla.web.routing import new_router
from flotilla.web.session import ViewerDep

router = new_router()
TICK_SECONDS = 1.0
#: A stream lasts at most this long; EventSource then reconnects by itself.
STREAM_SECONDS = 300.0
_RUNNING = {s.value for s in IN_PROGRESS}


def elapsed(events: Sequence[m.ClusterEvent], now: datetime | None = None) -> float | None:
    """Seconds the latest operation has run (or ran): from its *_IN_PROGRESS event to
    the terminal event after it, or to now while it still runs. ``events``: newest first."""
    if not events:
        return None
    start = next((e.created_at for e in events if e.status in _RUNNING), None)
    if start is None:
        return None
    latest = events[0]
    end = (now or datetime.now(UTC)) if latest.status in _RUNNING else latest.created_at
    return max(0.0, (end - start).total_seconds())


def describe(
    cluster: m.Cluster, events: Sequence[m.ClusterEvent], progress: operations.Progress | None
) -> dict[str, Any]:
    """What the page shows about the cluster's current operation (``progress``: its step,
    as the conductor recorded it)."""
    running = is_running(cluster.status)
    step = progress if running else None
    seconds = elapsed(events)
    return {
        "uuid": cluster.uuid,
        "status": cluster.status,
        "status_class": status_class(cluster.status),
        "status_reason": cluster.status_reason or "",
        "health_status": cluster.health_status or "UNKNOWN",
        "health_class": status_class(cluster.health_status),
        "running": running,
        "failed": is_failed(cluster.status),
        "step": {"index": step.step, "total": step.total, "text": step.label} if step else None,
        "elapsed": seconds,
        "elapsed_text": duration(seconds),
        "api_address": cluster.api_address,
        "gone": False,
    }


def snapshot(rt: Runtime, ctx: RequestContext, ident: str, known_uuid: str | None = None) -> dict[str, Any]:
    """The cluster's live state. Once the caller has seen the cluster (``known_uuid``), a
    NotFound means the delete finished: a final ``gone`` snapshot is returned instead."""
    with rt.db.reader() as s:
        try:
            row = clusters.get(s, ctx, known_uuid or ident, "cluster")
        except NotFound:
            if known_uuid is None:
                raise
            history = clusters.events(s, known_uuid, limit=20)
            last = history[0] if history else None
            return {
                "uuid": known_uuid, "status": last.status if last else "DELETE_COMPLETE",
                "status_class": "ok", "status_reason": (last.reason if last else None) or "deleted",
                "health_status": "UNKNOWN", "health_class": "idle", "running": False, "failed": False,
                "step": None, "elapsed": elapsed(history), "elapsed_text": duration(elapsed(history)),
                "api_address": None, "gone": True,
            }  # fmt: skip
        return describe(row, clusters.events(s, row.uuid, limit=20), operations.progress_of(s, row.uuid))


def _sse(data: dict[str, Any], event: str | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n"


@router.get("/clusters/{ident}/status.json")
async def cluster_status(request: Request, me: ViewerDep, ident: str) -> Response:
    data = await run_in_threadpool(snapshot, runtime(request), me.ctx, ident)
    return JSONResponse(data, headers={"Cache-Control": "no-store"})


@router.get("/clusters/{ident}/events")
async def cluster_events(request: Request, me: ViewerDep, ident: str) -> Response:
    rt = runtime(request)
    first = await run_in_threadpool(snapshot, rt, me.ctx, ident)  # 404 page before any streaming

    async def stream() -> AsyncIterator[str]:
        yield "retry: 3000\n\n"
        data = first
        ends = time.monotonic() + STREAM_SECONDS
        while True:
            if not data["running"]:
                yield _sse(data, "done")
                return
            yield _sse(data)
            if time.monotonic() > ends or await request.is_disconnected():
                return
            await asyncio.sleep(TICK_SECONDS)
            data = await run_in_threadpool(snapshot, rt, me.ctx, ident, first["uuid"])

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
