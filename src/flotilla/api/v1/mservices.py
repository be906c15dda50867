"""``GET /v1/mservices``: the conductors and their heartbeats (reference §11.3)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from flotilla.api.deps import ContextDep, RuntimeDep, check_query
from flotilla.api.v1.render import iso
from flotilla.db import models as m
from flotilla.errors import Forbidden
from flotilla.services import services

router = APIRouter(prefix="/v1/mservices", tags=["mservices"])


def service_dict(row: m.Service, down_after: float) -> dict[str, Any]:
    return {
        "id": row.id, "host": row.host, "binary": row.binary,
        "state": "up" if services.is_up(row, down_after) else "down",
        "report_count": row.report_count, "disabled": row.disabled, "disabled_reason": row.disabled_reason,
        "created_at": iso(row.created_at), "updated_at": iso(row.updated_at),
    }  # fmt: skip


@router.get("")
def list_services(request: Request, rt: RuntimeDep, ctx: ContextDep) -> dict[str, Any]:
    """Admins only; never paginated, so never a ``next`` link."""
    check_query(request, set())
    if not ctx.is_admin:
        raise Forbidden("Policy doesn't allow magnum-service:get_all to be performed.")
    down_after = rt.settings.conductor.service_down_time
    with rt.db.reader() as s:
        return {"mservices": [service_dict(r, down_after) for r in services.list_all(s)]}
