"""``/local/v1``: Flotilla's own catalog for local clusters (flavors, networks, images, keypairs).

Kept out of Magnum's ``/v1`` namespace on purpose: these stand in for Nova, Neutron
and Glance when clusters run on the local provider.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from flotilla.api.deps import BodyDep, ContextDep, RuntimeDep
from flotilla.api.fields import Field, parse_body
from flotilla.api.v1.render import iso
from flotilla.db import models as m
from flotilla.services import catalog

router = APIRouter(prefix="/local/v1", tags=["local catalog"])


def _flavor(r: m.Flavor) -> dict[str, Any]:
    return {
        "uuid": r.uuid,
        "name": r.name,
        "vcpus": r.vcpus,
        "ram_mb": r.ram_mb,
        "created_at": iso(r.created_at),
    }


def _network(r: m.Network) -> dict[str, Any]:
    return {"uuid": r.uuid, "name": r.name, "external": r.external, "created_at": iso(r.created_at)}


def _image(r: m.Image) -> dict[str, Any]:
    return {
        "uuid": r.uuid, "name": r.name, "os_distro": r.os_distro, "source": r.source,
        "build_method": r.build_method, "created_at": iso(r.created_at),
    }  # fmt: skip


def _keypair(r: m.Keypair) -> dict[str, Any]:
    return {
        "name": r.name, "fingerprint": r.fingerprint, "public_key": r.public_key, "project_id": r.project_id,
        "user_id": r.user_id, "created_at": iso(r.created_at),
    }  # fmt: skip


@router.get("/flavors")
def list_flavors(rt: RuntimeDep, ctx: ContextDep) -> dict[str, Any]:
    with rt.db.reader() as s:
        return {"flavors": [_flavor(r) for r in catalog.list_flavors(s)]}


@router.post("/flavors", status_code=201)
def create_flavor(rt: RuntimeDep, ctx: ContextDep, body: BodyDep) -> JSONResponse:
    v = parse_body(
        body,
        (Field("name", mandatory=True, min_len=1), Field("vcpus", "number", mandatory=True, minimum=0, maximum=1024),
         Field("ram_mb", "int", mandatory=True, minimum=64, maximum=2**31 - 1)),
        argument="flavor",
    )  # fmt: skip
    with rt.db.session() as s:
        return JSONResponse(_flavor(catalog.create_flavor(s, ctx, v["name"], v["vcpus"], v["ram_mb"])), 201)


@router.delete("/flavors/{ident}", status_code=204)
def delete_flavor(ident: str, rt: RuntimeDep, ctx: ContextDep) -> Response:
    with rt.db.session() as s:
        catalog.delete_flavor(s, ctx, ident)
    return Response(status_code=204)


@router.get("/networks")
def list_networks(rt: RuntimeDep, ctx: ContextDep) -> dict[str, Any]:
    with rt.db.reader() as s:
        return {"networks": [_network(r) for r in catalog.list_networks(s)]}


@router.post("/networks", status_code=201)
def create_network(rt: RuntimeDep, ctx: ContextDep, body: BodyDep) -> JSONResponse:
    v = parse_body(
        body, (Field("name", mandatory=True, min_len=1), Field("external", "bool")), argument="network"
    )
    with rt.db.session() as s:
        return JSONResponse(_network(catalog.create_network(s, ctx, v["name"], bool(v.get("external")))), 201)


@router.delete("/networks/{ident}", status_code=204)
def delete_network(ident: str, rt: RuntimeDep, ctx: ContextDep) -> Response:
    with rt.db.session() as s:
        catalog.delete_network(s, ctx, ident)
    return Response(status_code=204)


@router.get("/images")
def list_images(rt: RuntimeDep, ctx: ContextDep) -> dict[str, Any]:
    with rt.db.reader() as s:
        return {"images": [_image(r) for r in catalog.list_images(s)]}


@router.get("/images/{ident}")
def show_image(ident: str, rt: RuntimeDep, ctx: ContextDep) -> dict[str, Any]:
    with rt.db.reader() as s:
        return _image(catalog.get_one(s, m.Image, ident, "Image"))


@router.post("/images", status_code=201)
def create_image(rt: RuntimeDep, ctx: ContextDep, body: BodyDep) -> JSONResponse:
    v = parse_body(
        body,
        (Field("name", mandatory=True, min_len=1), Field("os_distro", min_len=1), Field("source", min_len=1),
         Field("build_method", min_len=1), Field("replace", "bool")),
        argument="image",
    )  # fmt: skip
    with rt.db.session() as s:
        row = catalog.register_image(
            s, ctx, v["name"], v.get("os_distro"), v.get("source"), v.get("build_method"),
            replace=bool(v.get("replace")),
        )  # fmt: skip
        s.flush()
        return JSONResponse(_image(row), 201)


@router.delete("/images/{ident}", status_code=204)
def delete_image(ident: str, rt: RuntimeDep, ctx: ContextDep) -> Response:
    with rt.db.session() as s:
        catalog.delete_image(s, ctx, ident)
    return Response(status_code=204)


@router.get("/keypairs")
def list_keypairs(rt: RuntimeDep, ctx: ContextDep) -> dict[str, Any]:
    with rt.db.reader() as s:
        return {"keypairs": [_keypair(r) for r in catalog.list_keypairs(s, ctx)]}


@router.get("/keypairs/{name}")
def show_keypair(name: str, rt: RuntimeDep, ctx: ContextDep) -> dict[str, Any]:
    with rt.db.reader() as s:
        return _keypair(catalog.find_keypair(s, ctx, name))


@router.post("/keypairs", status_code=201)
def create_keypair(rt: RuntimeDep, ctx: ContextDep, body: BodyDep) -> JSONResponse:
    v = parse_body(
        body, (Field("name", mandatory=True, min_len=1), Field("public_key", mandatory=True, max_len=16384)),
        argument="keypair",
    )  # fmt: skip
    with rt.db.session() as s:
        return JSONResponse(_keypair(catalog.create_keypair(s, ctx, v["name"], v["public_key"])), 201)


@router.delete("/keypairs/{name}", status_code=204)
def delete_keypair(name: str, rt: RuntimeDep, ctx: ContextDep) -> Response:
    with rt.db.session() as s:
        catalog.delete_keypair(s, ctx, name)
    return Response(status_code=204)
