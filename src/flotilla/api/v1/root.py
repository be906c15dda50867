"""Version documents: ``GET /`` and ``GET /v1`` (no auth)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from flotilla.api import microversion as mv
from flotilla.api.deps import RuntimeDep, base_url
from flotilla.services import engine_health

router = APIRouter(tags=["versions"])

RESOURCES = (
    "baymodels", "bays", "clustertemplates", "clusters", "quotas", "certificates", "mservices", "stats",
    "federations",
)  # fmt: skip


@router.get("/")
def versions(request: Request) -> dict[str, Any]:
    base = base_url(request)
    return {
        "name": "OpenStack Magnum API",
        "description": "Magnum is an OpenStack project which aims to provide container cluster management.",
        "versions": [
            {
                "id": "v1",
                "status": "CURRENT",
                "min_version": str(mv.MIN),
                "max_version": str(mv.MAX),
                "links": [{"href": f"{base}/v1/", "rel": "self"}],
            }
        ],
    }


@router.get("/v1")
def v1(request: Request) -> dict[str, Any]:
    base = base_url(request)
    doc: dict[str, Any] = {
        "id": "v1",
        "media_types": [{"base": "application/json", "type": "application/vnd.openstack.magnum.v1+json"}],
        "links": [
            {"href": f"{base}/v1/", "rel": "self"},
            {
                "href": "http://docs.openstack.org/developer/magnum/dev/api-spec-v1.html",
                "rel": "describedby",
                "type": "text/html",
            },
        ],
    }
    for res in RESOURCES:
        doc[res] = [
            {"href": f"{base}/v1/{res}/", "rel": "self"},
            {"href": f"{base}/{res}/", "rel": "bookmark"},
        ]
    doc["nodegroups"] = [
        {"href": f"{base}/v1/clusters/{{cluster_id}}/nodegroups", "rel": "self"},
        {"href": f"{base}/clusters/{{cluster_id}}/nodegroups", "rel": "bookmark"},
    ]
    return doc


@router.get("/healthcheck")
def healthcheck(rt: RuntimeDep) -> JSONResponse:
    """200 ``OK`` while the service can work; 503 ``DEGRADED`` while the local provider's
    Docker Engine is down (the conductor starts an owned one again). No auth: says only
    up/down, never a cluster or an address."""
    engine = engine_health.engine_state(rt.settings)
    down = engine["state"] == "down"
    return JSONResponse(
        {"status": "DEGRADED" if down else "OK", "docker_engine": engine}, 503 if down else 200
    )
