"""SQL statements per request, counted (not timed) with ``debug_sql_count``.

Issue 13's budget, authentication included and with the token cache empty (so the
token lookup is counted): a template or cluster show at most 2 statements, a template
create at most 4; lists at most 2. With the token cached, one fewer. BEGIN/COMMIT are
not counted (``flotilla.db.statements``). On SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from flotilla.api.app import create_app
from flotilla.services import tokens as token_service
from flotilla.settings import ConductorSettings, Settings

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAA/t6WaN9k/Dk/oEHxPtz533ZQOEO3cFLHE9eAHg1kQ count"
HEADER = "x-flotilla-sql-statements"


@pytest.fixture
def counted(tmp_path: Path, db_url: str) -> Iterator[tuple[FastAPI, TestClient, dict[str, str]]]:
    settings = Settings(
        data_dir=tmp_path, database_url=db_url, enabled_providers=["fake"], default_provider="fake",
        conductor=ConductorSettings(enabled=False), debug_sql_count=True, max_limit=1000,
    )  # fmt: skip
    app = create_app(settings)
    # The warm-cache counts must not depend on how fast a busy machine runs the test:
    # entries live for the whole test here (the setting itself allows at most 3 s).
    app.state.runtime.auth.cache.ttl = 3600
    with app.state.runtime.db.session() as s:
        admin = token_service.create(s, user_id="admin", project_id="admin", roles=["admin"])
        member = token_service.create(s, user_id="m", project_id="p1", roles=["member"])
    with TestClient(app) as client:
        yield app, client, {"admin": admin, "member": member}
    app.state.runtime.db.dispose()


def _statements(app: FastAPI, call: Callable[[], object], *, cold: bool) -> int:
    if cold:
        app.state.runtime.auth.cache.clear()
    r = call()
    assert getattr(r, "status_code", 0) < 300, getattr(r, "text", r)
    return int(r.headers[HEADER])  # type: ignore[attr-defined]


def test_show_create_and_list_stay_within_the_statement_budget(
    counted: tuple[FastAPI, TestClient, dict[str, str]],
) -> None:
    app, client, tok = counted
    admin = {"X-Auth-Token": tok["admin"]}
    member = {"X-Auth-Token": tok["member"], "OpenStack-API-Version": "container-infra latest"}
    assert (
        client.post(
            "/local/v1/images", json={"name": "node", "os_distro": "debian"}, headers=admin
        ).status_code
        == 201
    )
    assert (
        client.post("/local/v1/keypairs", json={"name": "k", "public_key": KEY}, headers=member).status_code
        == 201
    )
    body = {
        "coe": "swarm", "image_id": "node", "keypair_id": "k", "flavor_id": "m1.small", "master_flavor_id": "m1.small",
        "external_network_id": "public", "labels": {"a": "1"},
    }  # fmt: skip

    def create() -> object:
        return client.post("/v1/clustertemplates", json=body, headers=member)

    counts: dict[str, tuple[int, int]] = {}
    counts["create"] = (_statements(app, create, cold=True), _statements(app, create, cold=False))
    template = create().json()["uuid"]  # type: ignore[attr-defined]
    cluster = client.post(
        "/v1/clusters", json={"name": "c1", "cluster_template_id": template, "node_count": 2}, headers=member
    )
    assert cluster.status_code == 202, cluster.text
    uuid = cluster.json()["uuid"]
    for name, path in (
        ("show", f"/v1/clustertemplates/{template}"),
        ("list", "/v1/clustertemplates"),
        ("cluster show", f"/v1/clusters/{uuid}"),
        ("cluster show by name", "/v1/clusters/c1"),
        ("cluster list", "/v1/clusters"),
    ):
        counts[name] = tuple(  # type: ignore[assignment]
            _statements(app, lambda p=path: client.get(p, headers=member), cold=cold)
            for cold in (True, False)
        )
    budget = {
        "create": 4,
        "show": 2,
        "list": 2,
        "cluster show": 2,
        "cluster show by name": 2,
        "cluster list": 2,
    }
    over = {k: v for k, v in counts.items() if v[0] > budget[k] or v[1] > budget[k] - 1}
    assert not over, f"over budget (cold cache, warm cache): {over}; all: {counts}"


def test_the_cluster_show_of_one_statement_keeps_its_answers(
    counted: tuple[FastAPI, TestClient, dict[str, str]],
) -> None:
    """Node counts, label differences and name lookups of the joined read match the
    list's and the template's."""
    _, client, tok = counted
    admin = {"X-Auth-Token": tok["admin"]}
    member = {"X-Auth-Token": tok["member"], "OpenStack-API-Version": "container-infra latest"}
    client.post("/local/v1/images", json={"name": "node", "os_distro": "debian"}, headers=admin)
    client.post("/local/v1/keypairs", json={"name": "k", "public_key": KEY}, headers=member)
    t = client.post(
        "/v1/clustertemplates", json={"coe": "swarm", "image_id": "node", "keypair_id": "k", "labels": {"a": "1", "b": "2"}},
        headers=member,
    ).json()["uuid"]  # fmt: skip
    body = {"cluster_template_id": t, "node_count": 3, "master_count": 1, "labels": {"a": "9", "c": "3"}}
    for name in ("dup", "dup", "solo"):
        assert client.post("/v1/clusters", json={**body, "name": name}, headers=member).status_code == 202
    shown = client.get("/v1/clusters/solo", headers=member).json()
    assert (shown["node_count"], shown["master_count"]) == (3, 1)
    assert shown["labels_overridden"] == {"a": "1"}  # the template's value, as Magnum shows it
    assert shown["labels_added"] == {"c": "3"}
    assert shown["labels_skipped"] == {"b": "2"}
    listed = {c["name"]: c for c in client.get("/v1/clusters", headers=member).json()["clusters"]}
    assert (listed["solo"]["node_count"], listed["solo"]["master_count"]) == (3, 1)
    r = client.get("/v1/clusters/dup", headers=member)
    assert r.status_code == 409, r.text
    assert "Multiple Clusters exist with same name" in r.json()["errors"][0]["detail"]
    other = {"X-Auth-Token": tok["admin"]}
    assert (
        client.get("/v1/clusters/solo", headers={**other, "X-Auth-Token": tok["member"]}).status_code == 200
    )
