"""Who may call what, for EVERY route of the app (``app.routes``, so new routes are covered).

Project p1 owns a private template, a keypair and a swarm cluster the fake provider
finished. For each route and method:

* no token → 401 with Magnum's error body;
* p2's member: a route naming p1's records → 403 or 404; a collection → never p1's data;
* p1's reader: reads p1's records (200), every write → 403 or 404;
* admin-only routes (quota writes and list, mservices, catalog writes) → 403 for
  p1's member and reader and p2's member;
* never a 5xx.

One app per database for the module (the requests that must be refused change nothing).
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from flotilla.api.app import create_app
from flotilla.conductor.service import Conductor
from flotilla.services import tokens as token_service
from flotilla.settings import ConductorSettings, Settings

try:  # FastAPI >= 0.165 keeps included routers nested in app.routes
    from fastapi.routing import iter_route_contexts
except ImportError:  # pragma: no cover - older FastAPI: app.routes is flat already

    def iter_route_contexts(routes: Any) -> Any:  # type: ignore[no-redef]
        return routes


OFF = ConductorSettings(enabled=False, poll_interval=0.05)
SKIPPED = re.compile(r"^/$|^/v1$|^/healthcheck$|^/openapi\.json$|^/docs|^/redoc|^/dashboard(/|$)")
IDENTITIES = {
    "p1_member": ("alice", "p1", "member"),
    "p1_reader": ("rita", "p1", "reader"),
    "p2_member": ("bob", "p2", "member"),
}
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f alice@p1"
OTHER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4/ bob@p2"
CSR = "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"
#: Collection POSTs where Magnum answers 400 for another project's record named in the body
#: (reference §7.7 bays: unknown baymodel → 400; §11.4 certificates: unknown cluster → 400).
BODY_REFERENCE_400 = {("POST", "/v1/bays"), ("POST", "/v1/certificates")}


def _routes() -> list[tuple[str, str]]:
    """(METHOD, path) of every route but the skipped ones, from a throw-away app."""
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(Settings(data_dir=tmp, database_url=f"sqlite:///{tmp}/r.db", conductor=OFF))
        found = {
            (method, route.path)
            for route in iter_route_contexts(app.routes)
            if getattr(route, "path", None) and not SKIPPED.match(route.path)
            for method in (getattr(route, "methods", None) or ())
            if method != "HEAD"
        }
        app.state.runtime.db.dispose()
    return sorted(found, key=lambda r: (r[1], r[0]))


ROUTES = _routes()


def admin_only(method: str, path: str) -> bool:
    if path.startswith("/v1/quotas"):
        return method != "GET" or path == "/v1/quotas"
    if path.startswith("/v1/mservices"):
        return True
    return path.startswith("/local/v1/") and not path.startswith(OWN_RECORDS) and method != "GET"


#: /local/v1 records that belong to a user or project (not the shared catalog; cluster images are the cluster's).
OWN_RECORDS = ("/local/v1/keypairs", "/local/v1/tokens", "/local/v1/clusters")


def public_catalog(path: str) -> bool:
    """Catalog records every project reads (not p1's data)."""
    return path.startswith("/local/v1/") and not path.startswith(OWN_RECORDS)


@dataclass
class World:
    client: TestClient
    tokens: dict[str, str]
    ids: dict[str, str]

    @property
    def markers(self) -> list[str]:
        """Strings that only p1's data contains."""
        return [self.ids[k] for k in ("template", "cluster", "fingerprint", "template_name", "cluster_name")]


def _ok(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    out: dict[str, Any] = r.json()
    return out


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("authz")
    if request.param == "sqlite":
        shutil.copyfile(request.getfixturevalue("sqlite_template"), tmp / "flotilla.db")
        url = f"sqlite:///{tmp / 'flotilla.db'}"
    else:
        url = request.getfixturevalue("pg_module_db")
    settings = Settings(
        data_dir=tmp, database_url=url, enabled_providers=["fake"], default_provider="fake", conductor=OFF
    )
    app: FastAPI = create_app(settings)
    rt = app.state.runtime
    with rt.db.session() as s:
        tokens = {"admin": token_service.create(s, user_id="admin", project_id="admin", roles=["admin"])}
        for who, (user, project, role) in IDENTITIES.items():
            tokens[who] = token_service.create(s, user_id=user, project_id=project, roles=[role])
    client = TestClient(app, raise_server_exceptions=False)
    admin = {"X-Auth-Token": tokens["admin"]}
    p1 = {"X-Auth-Token": tokens["p1_member"], "OpenStack-API-Version": "container-infra latest"}
    _ok(
        client.post("/local/v1/images", json={"name": "flotilla-node", "os_distro": "debian"}, headers=admin),
        201,
    )
    key = _ok(client.post("/local/v1/keypairs", json={"name": "p1key", "public_key": KEY}, headers=p1), 201)
    body = {"coe": "swarm", "image_id": "flotilla-node", "keypair_id": "p1key", "name": "p1-private-template"}
    template = _ok(client.post("/v1/clustertemplates", json=body, headers=p1), 201)
    body = {"cluster_template_id": template["uuid"], "name": "p1-cluster", "node_count": 1}
    cluster = _ok(client.post("/v1/clusters", json=body, headers=p1), 202)
    conductor = Conductor(settings, rt.db)
    conductor.start()
    try:
        deadline = time.monotonic() + 30
        while (
            _ok(client.get(f"/v1/clusters/{cluster['uuid']}", headers=p1), 200)["status"] != "CREATE_COMPLETE"
        ):
            assert time.monotonic() < deadline, "the fake provider did not finish p1's cluster"
            time.sleep(0.05)
    finally:
        conductor.stop()
    alice = [
        t
        for t in _ok(client.get("/local/v1/tokens", headers=admin), 200)["tokens"]
        if t["user_id"] == "alice"
    ]
    ids = {
        "template": template["uuid"], "template_name": "p1-private-template", "cluster": cluster["uuid"],
        "cluster_name": "p1-cluster", "keypair": "p1key", "fingerprint": key["fingerprint"],
        "token": str(alice[0]["id"]),
    }  # fmt: skip
    yield World(client, tokens, ids)
    client.close()
    rt.db.dispose()


def fill(path: str, ids: dict[str, str]) -> str:
    """The route's path naming p1's records."""
    values = {"project_id": "p1", "resource": "Cluster"}
    if "/nodegroups/" in path:
        values["ident"] = "default-worker"
    elif path.startswith(("/v1/clustertemplates", "/v1/baymodels")):
        values["ident"] = ids["template"]
    elif path.startswith("/local/v1/keypairs"):
        values["name"] = ids["keypair"]
    elif path.startswith("/local/v1/tokens"):
        values["ident"] = ids["token"]  # alice's (p1's member): only she and admins may revoke it
    elif path.startswith("/local/v1/images"):
        values["ident"] = "flotilla-node"
    elif path.startswith("/local/v1/flavors"):
        values["ident"] = "m1.small"
    elif path.startswith("/local/v1/networks"):
        values["ident"] = "public"
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), ids["cluster"]), path)


def body_for(method: str, path: str, ids: dict[str, str]) -> Any:
    """A body the owner could send with success, so a refusal is about who asks."""
    if method not in ("POST", "PATCH", "PUT"):
        return None
    patch_paths = {
        "/v1/clustertemplates/{ident}": [{"op": "replace", "path": "/name", "value": "renamed"}],
        "/v1/baymodels/{ident}": [{"op": "replace", "path": "/name", "value": "renamed"}],
        "/v1/clusters/{ident}": [{"op": "replace", "path": "/node_count", "value": 2}],
        "/v1/bays/{ident}": [{"op": "replace", "path": "/node_count", "value": 2}],
    }
    if method == "PATCH":
        return patch_paths.get(path, {"hard_limit": 7} if path.startswith("/v1/quotas") else None)
    bodies: dict[str, Any] = {
        "/v1/clustertemplates": {"coe": "swarm", "image_id": "flotilla-node", "name": "mine"},
        "/v1/baymodels": {"coe": "swarm", "image_id": "flotilla-node", "keypair_id": "k", "name": "mine"},
        "/v1/clusters": {"cluster_template_id": ids["template"], "keypair": ids["keypair"], "name": "x"},
        "/v1/bays": {"baymodel_id": ids["template"], "name": "x"},
        "/v1/clusters/{ident}/actions/resize": {"node_count": 2},
        "/v1/clusters/{ident}/actions/upgrade": {"cluster_template": ids["template"]},
        "/v1/certificates": {"cluster_uuid": ids["cluster"], "csr": CSR},
        "/v1/quotas": {"project_id": "p1", "resource": "Cluster", "hard_limit": 7},
        "/local/v1/flavors": {"name": "f", "vcpus": 1, "ram_mb": 512},
        "/local/v1/networks": {"name": "n"},
        "/local/v1/images": {"name": "i", "os_distro": "debian"},
        "/local/v1/keypairs": {"name": "another", "public_key": OTHER_KEY},
    }
    return bodies.get(path, {})


def call(world: World, who: str | None, method: str, path: str) -> httpx.Response:
    headers = {"OpenStack-API-Version": "container-infra latest"}
    if who is not None:
        headers["X-Auth-Token"] = world.tokens[who]
    body = body_for(method, path, world.ids)
    url = fill(path, world.ids)
    if body is None:
        return world.client.request(method, url, headers=headers)
    return world.client.request(method, url, headers=headers, json=body)


def where(method: str, path: str, who: str | None, r: httpx.Response) -> str:
    return f"{who or 'no token'}: {method} {r.request.url.path} -> {r.status_code} {r.text[:300]}"


def assert_error_body(r: httpx.Response, status: int, msg: str) -> None:
    assert r.status_code == status, msg
    err = r.json()["errors"][0]
    assert err["status"] == status and err["detail"], msg


def assert_no_p1_data(world: World, r: httpx.Response, msg: str) -> None:
    """No p1 identifier in the reply, but those the request itself named (``X could not be found``)."""
    asked = str(r.request.url) + r.request.content.decode()
    leaked = [m for m in world.markers if m in r.text and m not in asked]
    assert not leaked, f"p1's {leaked} leaked: {msg}"


IDS = [f"{m} {p}" for m, p in ROUTES]


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=IDS)
def test_no_token_is_401(world: World, method: str, path: str) -> None:
    r = call(world, None, method, path)
    assert_error_body(r, 401, where(method, path, None, r))


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=IDS)
def test_other_project_gets_nothing_of_p1(world: World, method: str, path: str) -> None:
    r = call(world, "p2_member", method, path)
    msg = where(method, path, "p2_member", r)
    assert r.status_code < 500, msg
    if admin_only(method, path):
        assert_error_body(r, 403, msg)
    elif public_catalog(path):
        assert r.status_code in (200, 404), msg
    elif "{" in path:  # names p1's record
        assert r.status_code in (403, 404), msg
        assert_no_p1_data(world, r, msg)
    elif (method, path) in BODY_REFERENCE_400:
        assert r.status_code in (400, 403, 404), msg
        assert_no_p1_data(world, r, msg)
    else:
        assert_no_p1_data(world, r, msg)


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=IDS)
def test_reader_reads_but_never_writes(world: World, method: str, path: str) -> None:
    r = call(world, "p1_reader", method, path)
    msg = where(method, path, "p1_reader", r)
    assert r.status_code < 500, msg
    if admin_only(method, path):
        assert_error_body(r, 403, msg)
    elif method == "GET":
        assert r.status_code == 200, msg
    else:
        assert r.status_code in (403, 404), msg


ADMIN_ROUTES = [r for r in ROUTES if admin_only(*r)]


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES, ids=[f"{m} {p}" for m, p in ADMIN_ROUTES])
@pytest.mark.parametrize("who", ["p1_member", "p1_reader", "p2_member"])
def test_admin_only_routes_refuse_members(world: World, method: str, path: str, who: str) -> None:
    r = call(world, who, method, path)
    assert_error_body(r, 403, where(method, path, who, r))
