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
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from flotilla.api.app import create_app
from flotilla.api.openapi import describe
from flotilla.conductor.service import Conductor
from flotilla.services import tokens as token_service
from flotilla.settings import ConductorSettings, Settings

pytestmark = pytest.mark.fuzz

MAX_EXAMPLES = 25
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f fuzz@test"
#: Path parameter / body field -> names of seeded records (filled by the ``seeded`` fixture).
KNOWN: dict[str, list[Any]] = {}
STATS: list[Any] = []


def teardown_module() -> None:
    import collections, json as j
    with open("/tmp/scratch/stats.json", "w") as f:
        j.dump(STATS, f)

#: The 406 Magnum sends for an unsupported microversion has its own body (reference §2.3).
MICROVERSION_CODE = "magnum.microversion-unsupported"


def _operations() -> list[tuple[str, str]]:
    """(METHOD, path) of every fuzzed operation, from a throw-away app's document."""
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(Settings(data_dir=tmp, database_url=f"sqlite:///{tmp}/ops.db", conductor=OFF))
        describe(app)
        paths = app.openapi()["paths"]
        app.state.runtime.db.dispose()
    return [(m.upper(), p) for p, ops in paths.items() if FUZZED.match(p) for m in ops]


OFF = ConductorSettings(enabled=False, poll_interval=0.05)
FUZZED = re.compile(r"^/(v1|local/v1)(/|$)")
OPERATIONS = _operations()


def _ok(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    out: dict[str, Any] = r.json() if r.content else {}
    return out


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[FastAPI]:
    """One app for the module (SQLite only: the fuzzer is slow enough on one database)."""
    tmp = tmp_path_factory.mktemp("fuzz")
    shutil.copyfile(sqlite_template, tmp / "flotilla.db")
    settings = Settings(
        data_dir=tmp, database_url=f"sqlite:///{tmp / 'flotilla.db'}", enabled_providers=["fake"],
        default_provider="fake", conductor=OFF,
    )  # fmt: skip
    app = create_app(settings)
    describe(app)  # idempotent: create_app may already do it
    yield app
    app.state.runtime.db.dispose()


@pytest.fixture(scope="module")
def headers(fuzz_app: FastAPI) -> dict[str, str]:
    """Admin's records, and a swarm cluster the fake provider finished; returns admin's headers."""
    rt = fuzz_app.state.runtime
    with rt.db.session() as s:
        token = token_service.create(s, user_id="admin", project_id="admin", roles=["admin"])
    h = {"X-Auth-Token": token, "OpenStack-API-Version": "container-infra latest"}
    api = TestClient(fuzz_app)
    _ok(api.post("/local/v1/images", json={"name": "flotilla-node", "os_distro": "debian"}, headers=h), 201)
    _ok(api.post("/local/v1/keypairs", json={"name": "k", "public_key": PUBLIC_KEY}, headers=h), 201)
    body = {"coe": "swarm", "image_id": "flotilla-node", "keypair_id": "k", "name": "fuzz-template"}
    template = _ok(api.post("/v1/clustertemplates", json=body, headers=h), 201)
    body = {"cluster_template_id": template["uuid"], "name": "fuzz-cluster", "node_count": 2}
    cluster = _ok(api.post("/v1/clusters", json=body, headers=h), 202)
    _ok(
        api.post("/v1/quotas", json={"project_id": "p1", "resource": "Cluster", "hard_limit": 5}, headers=h),
        201,
    )
    conductor = Conductor(rt.settings, rt.db)
    conductor.start()
    try:
        deadline = time.monotonic() + 30
        while _ok(api.get(f"/v1/clusters/{cluster['uuid']}", headers=h), 200)["status"] != "CREATE_COMPLETE":
            assert time.monotonic() < deadline, "the fake provider did not finish the seed cluster"
            time.sleep(0.05)
    finally:
        conductor.stop()
    KNOWN.clear()
    KNOWN.update(
        ident=[template["uuid"], "fuzz-template", cluster["uuid"], "fuzz-cluster", "flotilla-node", "m1.small",
               "public", "default-worker"],
        cluster_ident=[cluster["uuid"], "fuzz-cluster"], name=["k"], project_id=["admin", "p1"],
        resource=["Cluster"], cluster_template_id=[template["uuid"], "fuzz-template"],
        baymodel_id=[template["uuid"], "fuzz-template"], cluster_template=[template["uuid"]],
        cluster_uuid=[cluster["uuid"]], bay_uuid=[cluster["uuid"]], image_id=["flotilla-node"],
        keypair_id=["k"], keypair=["k"], flavor_id=["m1.small"], master_flavor_id=["m1.small"],
        external_network_id=["public"], nodegroup=["default-worker", "default-master"], coe=["swarm", "docker"],
    )  # fmt: skip
    return h


@pytest.fixture(scope="module")
def fuzz_schema(fuzz_app: FastAPI, headers: dict[str, str]) -> Any:
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)
    schema.config.generation.update(deterministic=True, with_security_parameters=False)
    schema.hook(flatmap_path_parameters)
    schema.hook(flatmap_body)
    return schema


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


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_no_server_errors_and_magnum_error_bodies(
    method: str, path: str, fuzz_schema: Any, headers: dict[str, str]
) -> None:
    operation = fuzz_schema[path][method]
    modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    strategy = st.one_of(*(operation.as_strategy(generation_mode=mode) for mode in modes))

    @hypothesis_settings(
        max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
        suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate],
    )  # fmt: skip
    @given(case=strategy)
    def fuzz(case: Any) -> None:
        response = case.call(headers=headers)
        STATS.append((method, path, response.status_code, _request_text(case)[:200]))
        check_response(case, response)

    fuzz()
