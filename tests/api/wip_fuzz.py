"""Fuzz every operation of ``/openapi.json`` with schemathesis, in-process (ASGI).

The property: no request an admin can send gives a 5xx, and every 4xx carries
Magnum's error body (``{"errors": [{"status", "code", "title", "detail", ...}]}``).
Positive and negative cases, 25 per operation, derandomized (the same cases every
run), SQLite only. The database holds a finished swarm cluster (fake provider), its
template, an image, a keypair and a quota; path parameters and reference fields in
bodies are drawn from those names half of the time, so the fuzzer gets past the 404s.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from flotilla.api.openapi import describe
from flotilla.conductor.service import Conductor
from flotilla.settings import ConductorSettings, Settings

pytestmark = pytest.mark.fuzz

MAX_EXAMPLES = 25
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f fuzz@test"
#: Path parameter / body field -> names of seeded records (filled by the ``seeded`` fixture).
KNOWN: dict[str, list[Any]] = {}
#: The 406 Magnum sends for an unsupported microversion has its own body (reference §2.3).
MICROVERSION_CODE = "magnum.microversion-unsupported"


@pytest.fixture
def db_url(tmp_path: Path, sqlite_template: Path) -> str:
    """SQLite only (overrides the shared two-database parametrization): the fuzzer is slow enough."""
    path = tmp_path / "flotilla.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path, database_url=db_url, auth_strategy="token", enabled_providers=["fake"],
        default_provider="fake", conductor=ConductorSettings(enabled=False, poll_interval=0.05),
    )  # fmt: skip


def _ok(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    out: dict[str, Any] = r.json() if r.content else {}
    return out


@pytest.fixture
def seeded(app: FastAPI, api: TestClient, tokens: dict[str, str], settings: Settings) -> dict[str, str]:
    """Admin's records, and a swarm cluster the fake provider finished; returns the headers."""
    h = {"X-Auth-Token": tokens["admin"], "OpenStack-API-Version": "container-infra latest"}
    _ok(api.post("/local/v1/images", json={"name": "flotilla-node", "os_distro": "debian"}, headers=h), 201)
    _ok(api.post("/local/v1/keypairs", json={"name": "k", "public_key": PUBLIC_KEY}, headers=h), 201)
    body = {"coe": "swarm", "image_id": "flotilla-node", "keypair_id": "k", "name": "fuzz-template"}
    template = _ok(api.post("/v1/clustertemplates", json=body, headers=h), 201)
    body = {"cluster_template_id": template["uuid"], "name": "fuzz-cluster", "node_count": 2}
    cluster = _ok(api.post("/v1/clusters", json=body, headers=h), 202)
    _ok(api.post("/v1/quotas", json={"project_id": "p1", "resource": "Cluster", "hard_limit": 5}, headers=h), 201)
    conductor = Conductor(settings, app.state.runtime.db)
    conductor.start()
    try:
        deadline = time.monotonic() + 20
        while _ok(api.get(f"/v1/clusters/{cluster['uuid']}", headers=h), 200)["status"] != "CREATE_COMPLETE":
            assert time.monotonic() < deadline, "the fake provider did not finish the seed cluster"
            time.sleep(0.05)
    finally:
        conductor.stop()
    idents = [template["uuid"], "fuzz-template", cluster["uuid"], "fuzz-cluster"]
    KNOWN.clear()
    KNOWN.update(
        ident=[*idents, "flotilla-node", "m1.small", "public", "default-worker"],
        cluster_ident=[cluster["uuid"], "fuzz-cluster"],
        name=["k"],
        project_id=["admin", "p1"],
        resource=["Cluster"],
        cluster_template_id=[template["uuid"], "fuzz-template"],
        baymodel_id=[template["uuid"], "fuzz-template"],
        cluster_template=[template["uuid"]],
        cluster_uuid=[cluster["uuid"]],
        bay_uuid=[cluster["uuid"]],
        image_id=["flotilla-node"],
        keypair_id=["k"],
        keypair=["k"],
        flavor_id=["m1.small"],
        master_flavor_id=["m1.small"],
        external_network_id=["public"],
        nodegroup=["default-worker", "default-master"],
        coe=["swarm", "docker"],
    )
    return h


@pytest.fixture
def fuzz_schema(app: FastAPI, seeded: dict[str, str]) -> Iterator[Any]:
    describe(app)  # idempotent: create_app may already have done it
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    schema.config.generation.update(deterministic=True, with_security_parameters=False)
    schema.config.update(headers=seeded)
    schema = schema.include(path_regex=r"^/(v1|local/v1)(/|$)")
    schema.hook(flatmap_path_parameters)
    schema.hook(flatmap_body)
    yield schema


def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> Any:
    """Half of the time, the name of a record that exists."""
    return st.fixed_dictionaries(
        {k: st.sampled_from([v, *KNOWN.get(k, [])]) for k, v in (path_parameters or {}).items()}
    )


def flatmap_body(context: Any, body: Any) -> Any:
    if not isinstance(body, dict):
        return st.just(body)
    return st.fixed_dictionaries({k: st.sampled_from([v, *KNOWN.get(k, [])]) for k, v in body.items()})


def _request_text(case: Any) -> str:
    query = f"?{case.query}" if case.query else ""
    body = "" if case.body is None or not hasattr(case, "body") else json.dumps(case.body, default=str)
    return f"{case.method} {case.formatted_path}{query} {body}".strip()


def check_response(case: Any, response: Any) -> None:
    """No 5xx; a 4xx has Magnum's error body."""
    where = f"{_request_text(case)}\n-> {response.status_code} {response.text[:2000]}"
    assert response.status_code < 500, where
    if response.status_code < 400:
        return
    assert response.headers.get("content-type", [""])[0].startswith("application/json"), where
    body = response.json()
    assert isinstance(body, dict) and list(body) == ["errors"], where
    assert isinstance(body["errors"], list) and len(body["errors"]) == 1, where
    err = body["errors"][0]
    if err.get("code") == MICROVERSION_CODE:
        assert response.status_code == 406, where
        return
    assert {"status", "code", "title", "detail"} <= set(err), where
    assert err["status"] == response.status_code, where
    assert err["code"] in ("client", ""), where
    assert isinstance(err["title"], str) and isinstance(err["detail"], str), where


schema = schemathesis.pytest.from_fixture("fuzz_schema")


@schema.parametrize()
@hypothesis_settings(
    max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
    suppress_health_check=list(HealthCheck),
)  # fmt: skip
def test_no_server_errors_and_magnum_error_bodies(case: Any, seeded: dict[str, str]) -> None:
    response = case.call(headers=seeded)
    check_response(case, response)
