"""``/v1/certificates``: a cluster's CA, signing CSRs, rotating the CA (reference §11.4)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from flotilla.api.deps import BodyDep, ContextDep, RuntimeDep, base_url, check_query
from flotilla.api.fields import Field, parse_body
from flotilla.errors import Invalid, NotFound
from flotilla.services import certificates, clusters
from flotilla.services.commands import RotateCa

router = APIRouter(prefix="/v1/certificates", tags=["certificates"])


def _links(base: str, uuid: str) -> list[dict[str, str]]:
    return [
        {"href": f"{base}/v1/certificates/{uuid}", "rel": "self"},
        {"href": f"{base}/certificates/{uuid}", "rel": "bookmark"},
    ]


@router.get("/{ident}")
def show_ca(ident: str, request: Request, rt: RuntimeDep, ctx: ContextDep) -> dict[str, Any]:
    params = check_query(request, {"ca_cert_type"})
    kind = certificates.ca_kind(params.get("ca_cert_type"))  # Invalid for an unknown one
    with rt.db.reader() as s:
        cluster = clusters.get(s, ctx, ident, "cluster")
        pem = certificates.ca_pem(s, ctx, cluster, kind)
    return {"cluster_uuid": cluster.uuid, "bay_uuid": cluster.uuid, "pem": pem.rstrip("\n"),
            "links": _links(base_url(request), cluster.uuid)}  # fmt: skip


@router.post("", status_code=201)
def sign(request: Request, rt: RuntimeDep, ctx: ContextDep, body: BodyDep) -> JSONResponse:
    v = parse_body(
        body,
        (Field("cluster_uuid", min_len=1), Field("bay_uuid", min_len=1), Field("csr", mandatory=True, max_len=65536),
         Field("ca_cert_type"), Field("pem", readonly=True), Field("links", readonly=True)),
        argument="certificate",
    )  # fmt: skip
    ident = v.get("cluster_uuid") or v.get("bay_uuid")
    if not ident:
        raise Invalid(
            "Invalid input for field/attribute cluster_uuid. Value: 'None'. Mandatory field missing."
        )
    with rt.db.reader() as s:
        try:
            cluster = clusters.get(s, ctx, ident, "cluster")
        except NotFound as exc:
            raise Invalid(exc.message) from None
        pem = certificates.sign(s, ctx, rt.box, cluster, v["csr"])
    return JSONResponse(
        {"cluster_uuid": cluster.uuid, "bay_uuid": cluster.uuid, "csr": v["csr"], "pem": pem.rstrip("\n"),
         "links": _links(base_url(request), cluster.uuid)},
        status_code=201,
    )  # fmt: skip


@router.patch("/{ident}", status_code=202)
def rotate(ident: str, rt: RuntimeDep, ctx: ContextDep) -> JSONResponse:
    with rt.db.session() as s:
        cluster = clusters.get(s, ctx, ident, "cluster", for_update=True)
        clusters.rotate_ca(s, ctx, cluster, RotateCa())
        uuid = cluster.uuid
    rt.wake()
    return JSONResponse({"uuid": uuid}, status_code=202)
