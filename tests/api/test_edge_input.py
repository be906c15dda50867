"""What the edge refuses before any route runs or anything is stored (issue 14, items 2, 3, 9).

* A lone UTF-16 surrogate (sent as the JSON escape ``\\udfff``), in any body, a PATCH
  literal or the URL: a clear 400, nothing committed, every list still answers 200.
* JSON nested deeper than 32 levels: 400 (it used to be a RecursionError, 500).
* A body over ``max_request_body_bytes``: 413 in Magnum's error body.
* Labels past ``max_labels`` / ``max_label_key_length`` / ``max_label_value_length``: 400 naming the limit.
* A PATCH body that is not a JSON-patch list: 400 even when the id does not exist.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from flotilla.api.app import create_app
from flotilla.db import models as m
from flotilla.db.outbox import OutboxNotification
from flotilla.services import tokens as token_service
from flotilla.settings import ConductorSettings, Settings

Auth = Callable[..., dict[str, str]]
JSON = {"Content-Type": "application/json"}
SURROGATE = b'"\\udfff"'  # the JSON escape of a lone low surrogate, as a client can send it


def err(r: httpx.Response, status: int) -> str:
    """The error detail, after checking Magnum's error body."""
    assert r.status_code == status, r.text
    body = r.json()
    assert list(body) == ["errors"] and len(body["errors"]) == 1, body
    e = body["errors"][0]
    assert e["status"] == status and e["code"] == "client", e
    assert e["title"] == e["detail"].split(".")[0], e
    detail: str = e["detail"]
    return detail


@pytest.fixture
def seeded(api: TestClient, auth: Auth, register_image: Callable[..., Any]) -> dict[str, str]:
    """A template ``t`` and a cluster ``c`` of admin's project; returns admin's headers."""
    h = {**auth("admin", "latest"), **JSON}
    register_image("flotilla-node", "debian")
    r = api.post(
        "/v1/clustertemplates", json={"coe": "swarm", "image_id": "flotilla-node", "name": "t"}, headers=h
    )
    assert r.status_code == 201, r.text
    r = api.post("/v1/clusters", json={"cluster_template_id": "t", "name": "c"}, headers=h)
    assert r.status_code == 202, r.text
    return h


def _counts(app: FastAPI) -> tuple[int, int, int]:
    with app.state.runtime.db.reader() as s:
        return (
            s.scalar(select(func.count(m.ClusterTemplate.id))) or 0,
            s.scalar(select(func.count(m.Cluster.id))) or 0,
            s.scalar(select(func.count(OutboxNotification.id))) or 0,
        )


SURROGATE_BODIES: list[tuple[str, str, bytes]] = [
    ("POST", "/v1/clustertemplates",
     b'{"coe": "swarm", "image_id": "flotilla-node", "name": "t2", "labels": {"x": ' + SURROGATE + b"}}"),
    ("POST", "/v1/clustertemplates", b'{"coe": "swarm", "image_id": "flotilla-node", "name": ' + SURROGATE + b"}"),
    ("POST", "/v1/clusters", b'{"cluster_template_id": "t", "name": "c2", "labels": {"x": ' + SURROGATE + b"}}"),
    ("POST", "/v1/clusters", b'{"cluster_template_id": "t", "labels": {' + SURROGATE + b': "v"}}'),
    ("POST", "/v1/bays", b'{"baymodel_id": "t", "name": "b2", "labels": {"x": ' + SURROGATE + b"}}"),
    ("PATCH", "/v1/clustertemplates/t", b'[{"op": "replace", "path": "/labels", "value": {"x": ' + SURROGATE + b"}}]"),
    ("PATCH", "/v1/clustertemplates/t", b'[{"op": "replace", "path": "/name", "value": ' + SURROGATE + b"}]"),
    # the Python-literal form magnumclient sends for labels: the surrogate comes out of ast.literal_eval
    ("PATCH", "/v1/clustertemplates/t", b'[{"op": "replace", "path": "/labels", "value": "{\'x\': \'\\\\udfff\'}"}]'),
    ("PATCH", "/v1/clusters/c", b'[{"op": "replace", "path": "/health_status_reason", "value": {"x": ' + SURROGATE + b"}}]"),
    ("POST", "/local/v1/keypairs", b'{"name": "k", "public_key": "ssh-ed25519 AAAA ' + SURROGATE[1:-1] + b'"}'),
    ("POST", "/v1/quotas", b'{"project_id": ' + SURROGATE + b', "resource": "Cluster", "hard_limit": 1}'),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "body"),
    SURROGATE_BODIES,
    ids=[f"{m} {p} #{i}" for i, (m, p, _) in enumerate(SURROGATE_BODIES)],
)
def test_lone_surrogate_is_refused_and_nothing_is_stored(
    api: TestClient, app: FastAPI, seeded: dict[str, str], method: str, path: str, body: bytes
) -> None:
    before = _counts(app)
    detail = err(api.request(method, path, content=body, headers=seeded), 400)
    assert "lone UTF-16 surrogate (\\udfff)" in detail, detail
    assert _counts(app) == before
    for listing in (
        "/v1/clustertemplates/detail",
        "/v1/clusters/detail",
        "/v1/bays",
        "/v1/baymodels",
        "/v1/quotas",
    ):
        r = api.get(listing, headers=seeded)
        assert r.status_code == 200, f"{listing}: {r.text}"
    assert api.get("/v1/clusters/c", headers=seeded).json()["labels"] == {}


def test_surrogate_message_names_where(api: TestClient, seeded: dict[str, str]) -> None:
    body = b'{"cluster_template_id": "t", "labels": {"x": ' + SURROGATE + b"}}"
    detail = err(api.post("/v1/clusters", content=body, headers=seeded), 400)
    assert detail == (
        "The request body contains a lone UTF-16 surrogate (\\udfff) that is not valid Unicode text, "
        "which no field accepts. Found at labels.x."
    )


def test_valid_surrogate_pairs_and_other_unicode_pass(api: TestClient, seeded: dict[str, str]) -> None:
    """An escaped pair is one character (U+1F600); only lone halves are refused."""
    body = b'{"cluster_template_id": "t", "name": "c3", "labels": {"emoji": "\\ud83d\\ude00", "cafe": "caf\xc3\xa9"}}'
    r = api.post("/v1/clusters", content=body, headers=seeded)
    assert r.status_code == 202, r.text
    labels = api.get(f"/v1/clusters/{r.json()['uuid']}", headers=seeded).json()["labels"]
    assert labels == {"emoji": "\U0001f600", "cafe": "café"}


@pytest.mark.parametrize(
    "url", ["/v1/clusters/%ED%BF%BF", "/v1/clusters?marker=%ED%BF%BF", "/v1/clusters/%FF"]
)
def test_url_that_is_not_utf8_is_refused(api: TestClient, seeded: dict[str, str], url: str) -> None:
    detail = err(api.get(url, headers=seeded), 400)
    assert "is not valid UTF-8 once percent-decoded" in detail


@pytest.mark.parametrize("depth", [33, 900, 5000, 100_000])
def test_deep_json_is_a_400(api: TestClient, seeded: dict[str, str], depth: int) -> None:
    body = b'{"cluster_template_id": "t", "labels": ' + b"[" * depth + b"]" * depth + b"}"
    detail = err(api.post("/v1/clusters", content=body, headers=seeded), 400)
    assert "JSON nested deeper than 32 levels" in detail


def test_nesting_within_the_limit_reaches_the_route(api: TestClient, seeded: dict[str, str]) -> None:
    body = b'{"cluster_template_id": "t", "labels": ' + b"[" * 20 + b"]" * 20 + b"}"
    detail = err(api.post("/v1/clusters", content=body, headers=seeded), 400)
    assert detail.startswith("Invalid input for field/attribute labels")


# ---- request body limit -------------------------------------------------------------------


@pytest.fixture
def small_app(tmp_path: Path, db_url: str) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """The app with ``max_request_body_bytes=4096``."""
    settings = Settings(
        data_dir=tmp_path, database_url=db_url, conductor=ConductorSettings(enabled=False),
        max_request_body_bytes=4096,
    )  # fmt: skip
    application = create_app(settings)
    with application.state.runtime.db.session() as s:
        token = token_service.create(s, user_id="admin", project_id="admin", roles=["admin"])
    try:
        yield TestClient(application), {"X-Auth-Token": token, **JSON}
    finally:
        application.state.runtime.db.dispose()


def test_default_body_limit_is_one_mebibyte() -> None:
    assert Settings().max_request_body_bytes == 1024 * 1024


def test_body_over_the_default_limit_is_a_413(api: TestClient, seeded: dict[str, str]) -> None:
    body = b'{"name": "' + b"x" * (1024 * 1024) + b'"}'
    detail = err(api.post("/v1/clustertemplates", content=body, headers=seeded), 413)
    assert detail == (
        "Request is too large: the body may have at most 1048576 bytes (the operator sets max_request_body_bytes)."
    )


def test_body_limit_is_a_setting(small_app: tuple[TestClient, dict[str, str]]) -> None:
    api, h = small_app
    under = {"name": "net-" + "a" * 100}
    assert api.post("/local/v1/networks", json=under, headers=h).status_code == 201
    over = {"name": "b" * 5000}
    assert "at most 4096 bytes" in err(api.post("/local/v1/networks", json=over, headers=h), 413)


def test_body_limit_holds_without_content_length(small_app: tuple[TestClient, dict[str, str]]) -> None:
    """A chunked body (no Content-Length) is counted as it arrives."""
    api, h = small_app

    def chunks() -> Iterator[bytes]:
        yield b'{"name": "'
        for _ in range(10):
            yield b"c" * 1000
        yield b'"}'

    r = api.post("/local/v1/networks", content=chunks(), headers=h)
    assert "content-length" not in {k.lower() for k in r.request.headers}
    err(r, 413)
    assert [n["name"] for n in api.get("/local/v1/networks", headers=h).json()["networks"]] == ["public"]


# ---- label caps ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({f"k{i}": "v" for i in range(101)}, "Too many labels: 101 given, at most 100 are accepted (the operator sets max_labels)."),
        ({"k" * 256: "v"}, "is 256 characters long; at most 255 are accepted (the operator sets max_label_key_length)."),
        ({"big": "v" * 8193}, "The value of label big is 8193 characters long; at most 8192 are accepted (the operator sets max_label_value_length)."),
    ],
    ids=["count", "key", "value"],
)  # fmt: skip
def test_label_caps(
    api: TestClient, app: FastAPI, seeded: dict[str, str], labels: dict[str, str], expected: str
) -> None:
    before = _counts(app)
    body = {"coe": "swarm", "image_id": "flotilla-node", "labels": labels}
    assert err(api.post("/v1/clustertemplates", json=body, headers=seeded), 400).endswith(expected)
    body = {"cluster_template_id": "t", "labels": labels}
    assert err(api.post("/v1/clusters", json=body, headers=seeded), 400).endswith(expected)
    free = {"coe": "swarm", "image_id": "flotilla-node", "name": "free"}  # "t" is in use: no PATCH there
    assert api.post("/v1/clustertemplates", json=free, headers=seeded).status_code == 201
    patch = [{"op": "replace", "path": "/labels", "value": labels}]
    assert err(api.patch("/v1/clustertemplates/free", json=patch, headers=seeded), 400).endswith(expected)
    assert api.get("/v1/clustertemplates/free", headers=seeded).json()["labels"] == {}
    assert _counts(app)[1:] == before[1:]


def test_labels_at_the_caps_are_accepted(api: TestClient, seeded: dict[str, str]) -> None:
    labels = {f"k{i}": "v" for i in range(98)} | {"k" * 255: "v", "big": "v" * 8192}
    body = {"coe": "swarm", "image_id": "flotilla-node", "name": "full", "labels": labels}
    r = api.post("/v1/clustertemplates", json=body, headers=seeded)
    assert r.status_code == 201, r.text[:300]
    assert len(r.json()["labels"]) == 100


def test_label_caps_are_settings(tmp_path: Path, db_url: str) -> None:
    settings = Settings(
        data_dir=tmp_path, database_url=db_url, conductor=ConductorSettings(enabled=False),
        max_labels=2, max_label_key_length=5, max_label_value_length=7,
    )  # fmt: skip
    application = create_app(settings)
    try:
        caps = application.state.runtime.limits.labels
        assert (caps.max_labels, caps.max_key_length, caps.max_value_length) == (2, 5, 7)
        with application.state.runtime.db.session() as s:
            token = token_service.create(s, user_id="admin", project_id="admin", roles=["admin"])
        api, h = TestClient(application), {"X-Auth-Token": token}
        r = api.post("/local/v1/images", json={"name": "flotilla-node", "os_distro": "debian"}, headers=h)
        assert r.status_code == 201
        body = {"coe": "swarm", "image_id": "flotilla-node", "labels": {"a": "1", "b": "2", "c": "3"}}
        assert "at most 2 are accepted" in err(api.post("/v1/clustertemplates", json=body, headers=h), 400)
        body["labels"] = {"a": "12345678"}
        assert "at most 7 are accepted" in err(api.post("/v1/clustertemplates", json=body, headers=h), 400)
    finally:
        application.state.runtime.db.dispose()


# ---- PATCH: the body before the lookup --------------------------------------------------------

NOT_A_PATCH: list[Any] = [
    {"op": "replace", "path": "/name", "value": "x"},
    "replace",
    [{"op": "move", "path": "/name"}],
    [{"op": "replace", "path": "name", "value": "x"}],
    [{"op": "replace", "path": "/uuid", "value": "x"}],
    ["not an object"],
]


@pytest.mark.parametrize("collection", ["clustertemplates", "baymodels", "clusters", "bays"])
@pytest.mark.parametrize("body", NOT_A_PATCH, ids=[f"bad{i}" for i in range(len(NOT_A_PATCH))])
def test_bad_patch_body_is_400_even_for_a_missing_id(
    api: TestClient, auth: Auth, collection: str, body: Any
) -> None:
    """Magnum validates the body first (tempest's test_update_cluster_template_invalid_patch)."""
    r = api.patch(f"/v1/{collection}/no-such-id", json=body, headers=auth("p1_member", "latest"))
    assert err(r, 400).startswith(("Invalid input for field/attribute", "'/uuid' is an internal attribute"))


def test_good_patch_for_a_missing_id_is_still_404(api: TestClient, auth: Auth) -> None:
    body = [{"op": "replace", "path": "/name", "value": "x"}]
    r = api.patch("/v1/clustertemplates/no-such-id", json=body, headers=auth("p1_member"))
    assert r.status_code == 404, r.text
