"""Operator pages (admins only): quotas with their use, and the conductor services.

Same services and the same policy as ``/v1/quotas``, ``/v1/stats`` and ``/v1/mservices``.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request, Response

from flotilla.api.deps import runtime
from flotilla.errors import Forbidden
from flotilla.services import clusters, quotas, services, stats
from flotilla.web.render import page
from flotilla.web.routing import new_router
from flotilla.web.session import ViewerDep

router = new_router()


@dataclass(frozen=True)
class QuotaRow:
    project_id: str
    resource: str
    hard_limit: int
    clusters: int
    nodes: int
    explicit: bool  # False: no quota row, the operator default applies


@router.get("/admin/quotas")
def quota_page(request: Request, me: ViewerDep) -> Response:
    rt = runtime(request)
    default = rt.settings.max_clusters_per_project
    with rt.db.reader() as s:
        rows = quotas.list_page(
            s, me.ctx, all_tenants=True, limit=None, marker=None, sort_key="project_id", sort_dir="asc",
            max_limit=rt.settings.max_limit,
        ).items  # fmt: skip
        listed = {(q.project_id, q.resource) for q in rows}
        # Projects that have clusters but no quota row run on the default.
        seen = clusters.list_page(
            s, me.ctx, "cluster", limit=None, marker=None, sort_key="id", sort_dir="asc",
            max_limit=rt.settings.max_limit,
        ).items  # fmt: skip
        projects = sorted({c.project_id for c in seen} | {q.project_id for q in rows})
        out: list[QuotaRow] = []
        for project in projects:
            use = stats.cluster_stats(s, me.ctx, project_id=project)
            for q in [q for q in rows if q.project_id == project]:
                out.append(QuotaRow(project, q.resource, q.hard_limit, use.clusters, use.nodes, True))
            if (project, quotas.DEFAULT_RESOURCE) not in listed:
                dq = quotas.get(s, me.ctx, project, quotas.DEFAULT_RESOURCE, default_limit=default)
                out.append(QuotaRow(project, dq.resource, dq.hard_limit, use.clusters, use.nodes, False))
        total = stats.cluster_stats(s, me.ctx, project_id=None)
    return page(
        request, "quotas.html", title="Quotas", active="quotas", rows=out, default_limit=default, total=total
    )


@router.get("/admin/services")
def services_page(request: Request, me: ViewerDep) -> Response:
    if not me.is_admin:  # the rule of GET /v1/mservices
        raise Forbidden("Policy doesn't allow magnum-service:get_all to be performed.")
    rt = runtime(request)
    down_after = rt.settings.conductor.service_down_time
    with rt.db.reader() as s:
        rows = [(row, services.is_up(row, down_after)) for row in services.list_all(s)]
    return page(
        request, "services.html", title="Services", active="services", rows=rows, down_after=down_after
    )
