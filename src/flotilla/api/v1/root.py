"""Version documents: ``GET /`` and ``GET /v1`` (no auth)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from flotilla.api import microversion as mv
from flotilla.api.deps import base_url

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
def healthcheck() -> dict[str, str]:
    return {"status": "OK"}
