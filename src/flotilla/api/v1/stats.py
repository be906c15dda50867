"""``GET /v1/stats``: how many clusters and nodes (reference §11.2; 1.4 is not enforced)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from flotilla.api.deps import ContextDep, RuntimeDep, check_query
from flotilla.services import stats

router = APIRouter(prefix="/v1/stats", tags=["stats"])


@router.get("")
def get_stats(request: Request, rt: RuntimeDep, ctx: ContextDep) -> dict[str, int]:
    params = check_query(request, {"project_id", "type"})
    with rt.db.reader() as s:
        result = stats.cluster_stats(
            s, ctx, project_id=params.get("project_id") or None, stats_type=params.get("type", "cluster")
        )
    return {"clusters": result.clusters, "nodes": result.nodes}
