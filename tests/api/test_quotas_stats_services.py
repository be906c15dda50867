"""Quotas, stats and mservices through the ASGI app (reference §11.1 to §11.3, §9.2)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import update

from flotilla.api.v1 import mservices as mservices_api
from flotilla.api.v1 import quotas as quotas_api
from flotilla.api.v1 import stats as stats_api
from flotilla.db import models as m
from flotilla.db.models import utcnow
from flotilla.services import services as service_heartbeats

Auth = Callable[..., dict[str, str]]
QUOTA_KEYS = ["id", "project_id", "resource", "hard_limit", "created_at", "updated_at"]
SERVICE_KEYS = [
    "id", "host", "binary", "state", "report_count", "disabled", "disabled_reason", "created_at", "updated_at",
]  # fmt: skip


@pytest.fixture(autouse=True)
def _routers(app: FastAPI) -> None:
    """Mount the three routers when ``create_app`` does not (yet) include them."""
    paths = {getattr(r, "path", "") for r in app.routes}
    for router, path in (
        (quotas_api.router, "/v1/quotas"),
        (stats_api.router, "/v1/stats"),
        (mservices_api.router, "/v1/mservices"),
    ):
        if path not in paths:
            app.include_router(router)


def assert_error(r: httpx.Response, status: int, detail: str) -> None:
    assert r.status_code == status, r.text
    err = r.json()["errors"][0]
    assert err["status"] == status
    assert err["detail"] == detail
    assert err["title"] == detail.split(".")[0]


def make_quota(api: TestClient, auth: Auth, project: str, hard_limit: int = 3) -> dict[str, Any]:
    r = api.post(
        "/v1/quotas", json={"project_id": project, "resource": "Cluster", "hard_limit": hard_limit},
        headers=auth("admin"),
    )  # fmt: skip
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


# ---- quotas: create ------------------------------------------------------------------------


def test_admin_creates_a_quota(api: TestClient, auth: Auth) -> None:
    r = api.post("/v1/quotas", json={"project_id": "p1", "hard_limit": 5}, headers=auth("admin"))
    assert r.status_code == 201, r.text
    body = r.json()
    assert list(body) == QUOTA_KEYS
    assert body["project_id"] == "p1"
    assert body["resource"] == "Cluster"  # the default and only resource
    assert body["hard_limit"] == 5
    assert isinstance(body["id"], int)
    assert body["created_at"].endswith("+00:00")
    assert body["updated_at"] is None
    assert "location" not in r.headers


def test_hard_limit_defaults_to_one_and_zero_is_allowed(api: TestClient, auth: Auth) -> None:
    assert api.post("/v1/quotas", json={"project_id": "p1"}, headers=auth("admin")).json()["hard_limit"] == 1
    r = api.post("/v1/quotas", json={"project_id": "p2", "hard_limit": 0}, headers=auth("admin"))
    assert r.status_code == 201 and r.json()["hard_limit"] == 0


def test_duplicate_quota_is_409(api: TestClient, auth: Auth) -> None:
    make_quota(api, auth, "p1")
    r = api.post("/v1/quotas", json={"project_id": "p1", "hard_limit": 9}, headers=auth("admin"))
    assert_error(r, 409, "Quota for project p1 already exists for resource Cluster.")


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"hard_limit": 3}, "Must provide a valid project ID."),
        ({"project_id": None}, "Must provide a valid project ID."),
        (
            {"project_id": "p1", "resource": "Node"},
            "Invalid input for field/attribute resource. Value: 'Node'. Value should be one of: Cluster",
        ),
        (
            {"project_id": "p1", "hard_limit": -1},
            "Invalid input for field/attribute hard_limit. Value: '-1'. Value should be greater or equal to 0",
        ),
        (
            {"project_id": "p1", "hard_limit": "ten"},
            "Invalid input for field/attribute hard_limit. Value: 'ten'. Wrong type. Expected an integer.",
        ),
        ({"project_id": "p1", "colour": "red"}, "Unknown attribute for argument quota: colour"),
        (
            {"project_id": "p1", "id": 7},
            "Invalid input for field/attribute id. Value: '7'. Cannot set read only field.",
        ),
    ],
)
def test_bad_create_bodies_are_400(api: TestClient, auth: Auth, body: dict[str, Any], detail: str) -> None:
    assert_error(api.post("/v1/quotas", json=body, headers=auth("admin")), 400, detail)


@pytest.mark.parametrize("who", ["p1_member", "p1_reader"])
def test_only_admins_write_or_list_quotas(api: TestClient, auth: Auth, who: str) -> None:
    make_quota(api, auth, "p1")
    h = auth(who)
    assert_error(
        api.post("/v1/quotas", json={"project_id": "p1"}, headers=h), 403,
        "Policy doesn't allow quota:create to be performed.",
    )  # fmt: skip
    assert_error(
        api.patch("/v1/quotas/p1/Cluster", json={"hard_limit": 50}, headers=h), 403,
        "Policy doesn't allow quota:update to be performed.",
    )  # fmt: skip
    assert_error(
        api.delete("/v1/quotas/p1/Cluster", headers=h),
        403,
        "Policy doesn't allow quota:delete to be performed.",
    )
    assert_error(api.get("/v1/quotas", headers=h), 403, "Policy doesn't allow quota:get_all to be performed.")
    assert api.get("/v1/quotas/p1/Cluster", headers=auth("admin")).json()["hard_limit"] == 3


# ---- quotas: show ---------------------------------------------------------------------------


def test_show_without_a_row_gives_the_configured_default(api: TestClient, auth: Auth, app: FastAPI) -> None:
    r = api.get("/v1/quotas/p1/Cluster", headers=auth("p1_member"))
    assert r.status_code == 200, r.text
    assert r.json() == {"project_id": "p1", "resource": "Cluster", "hard_limit": 20}
    app.state.runtime.settings.max_clusters_per_project = 7
    assert api.get("/v1/quotas/p9/Cluster", headers=auth("admin")).json() == {
        "project_id": "p9", "resource": "Cluster", "hard_limit": 7,
    }  # fmt: skip


def test_show_a_stored_quota(api: TestClient, auth: Auth) -> None:
    made = make_quota(api, auth, "p1", 4)
    for who in ("admin", "p1_member", "p1_reader"):
        r = api.get("/v1/quotas/p1/Cluster", headers=auth(who))
        assert r.status_code == 200, r.text
        assert r.json() == made


def test_non_admins_may_not_read_another_projects_quota(api: TestClient, auth: Auth) -> None:
    make_quota(api, auth, "p2")
    assert_error(api.get("/v1/quotas/p2/Cluster", headers=auth("p1_member")), 403, "Not authorized.")
    assert_error(api.get("/v1/quotas/p1/Cluster", headers=auth("p2_member")), 403, "Not authorized.")


# ---- quotas: update and delete --------------------------------------------------------------


def test_patch_takes_a_plain_object_and_answers_202(api: TestClient, auth: Auth) -> None:
    made = make_quota(api, auth, "p1", 3)
    r = api.patch(
        "/v1/quotas/p1/Cluster", json={"project_id": "p1", "resource": "Cluster", "hard_limit": 10},
        headers=auth("admin"),
    )  # fmt: skip
    assert r.status_code == 202, r.text
    body = r.json()
    assert list(body) == QUOTA_KEYS
    assert (body["id"], body["hard_limit"], body["created_at"]) == (made["id"], 10, made["created_at"])
    assert body["updated_at"] is not None
    assert api.get("/v1/quotas/p1/Cluster", headers=auth("admin")).json()["hard_limit"] == 10


def test_patch_rejects_a_json_patch_list_and_unknown_keys(api: TestClient, auth: Auth) -> None:
    make_quota(api, auth, "p1")
    r = api.patch(
        "/v1/quotas/p1/Cluster",
        json=[{"op": "replace", "path": "/hard_limit", "value": 2}],
        headers=auth("admin"),
    )
    assert r.status_code == 400
    assert_error(
        api.patch("/v1/quotas/p1/Cluster", json={"limit": 2}, headers=auth("admin")), 400,
        "Unknown attribute for argument quotapatch: limit",
    )  # fmt: skip


def test_patch_or_delete_of_a_missing_quota_is_404(api: TestClient, auth: Auth) -> None:
    detail = "Quota could not be found: project_id p1 resource Cluster."
    assert_error(
        api.patch("/v1/quotas/p1/Cluster", json={"hard_limit": 2}, headers=auth("admin")), 404, detail
    )
    assert_error(api.delete("/v1/quotas/p1/Cluster", headers=auth("admin")), 404, detail)


def test_delete_returns_to_the_default(api: TestClient, auth: Auth) -> None:
    make_quota(api, auth, "p1", 2)
    r = api.delete("/v1/quotas/p1/Cluster", headers=auth("admin"))
    assert r.status_code == 204 and r.content == b""
    assert api.get("/v1/quotas/p1/Cluster", headers=auth("admin")).json() == {
        "project_id": "p1", "resource": "Cluster", "hard_limit": 20,
    }  # fmt: skip


# ---- quotas: list ---------------------------------------------------------------------------


def test_list_is_the_callers_project_unless_all_tenants(api: TestClient, auth: Auth) -> None:
    for p in ("admin", "p1", "p2"):
        make_quota(api, auth, p)
    h = auth("admin")
    assert [q["project_id"] for q in api.get("/v1/quotas", headers=h).json()["quotas"]] == ["admin"]
    body = api.get("/v1/quotas?all_tenants=true", headers=h).json()
    assert [q["project_id"] for q in body["quotas"]] == ["admin", "p1", "p2"]
    assert list(body) == ["quotas"]  # no next link: the page is not full
    assert list(body["quotas"][0]) == QUOTA_KEYS
    for path in ("/v1/quotas/", "/quotas"):
        assert api.get(path + "?all_tenants=1", headers=h).json() == body
    assert [q["project_id"] for q in api.get("/v1/quotas?all_tenants=False", headers=h).json()["quotas"]] == [
        "admin"
    ]


def test_list_pages_with_integer_markers(api: TestClient, auth: Auth) -> None:
    made = [make_quota(api, auth, p) for p in ("p1", "p2", "p3", "p4", "p5")]
    h = auth("admin")
    r = api.get("/v1/quotas?all_tenants=true&limit=2", headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [q["id"] for q in body["quotas"]] == [made[0]["id"], made[1]["id"]]
    nxt = urlsplit(body["next"])
    assert (nxt.scheme, nxt.netloc, nxt.path) == ("http", "testserver", "/v1/quotas")
    assert parse_qs(nxt.query) == {
        "sort_key": ["id"], "sort_dir": ["asc"], "limit": ["2"], "marker": [str(made[1]["id"])],
    }  # fmt: skip
    # `next` does not carry all_tenants over (reference §4): the client adds it back.
    second = api.get(f"{nxt.path}?{nxt.query}&all_tenants=true", headers=h).json()
    assert [q["id"] for q in second["quotas"]] == [made[2]["id"], made[3]["id"]]
    desc = api.get("/v1/quotas?all_tenants=true&sort_key=project_id&sort_dir=desc", headers=h).json()
    assert [q["project_id"] for q in desc["quotas"]] == ["p5", "p4", "p3", "p2", "p1"]


@pytest.mark.parametrize(
    ("query", "status", "detail"),
    [
        ("marker=abc", 400, "Invalid marker abc: expected an integer id."),
        ("marker=99999", 404, "Quota 99999 could not be found."),
        ("limit=0", 400, "Limit must be positive"),
        ("sort_key=colour", 400, 'The sort_key value "colour" is an invalid field for sorting'),
        ("sort_dir=up", 400, "Invalid sort direction: up. Acceptable values are 'asc' or 'desc'"),
        (
            "all_tenants=maybe",
            400,
            "Invalid input for field/attribute all_tenants. Value: 'maybe'. Wrong type. Expected a boolean (true/false).",
        ),
        ("project_id=p1", 400, 'Unknown argument: "project_id"'),
    ],
)
def test_bad_list_parameters(api: TestClient, auth: Auth, query: str, status: int, detail: str) -> None:
    make_quota(api, auth, "admin")
    assert_error(api.get(f"/v1/quotas?all_tenants=true&{query}", headers=auth("admin")), status, detail)


def test_a_marker_outside_the_listed_rows_is_unknown(api: TestClient, auth: Auth) -> None:
    other = make_quota(api, auth, "p1")
    r = api.get(f"/v1/quotas?marker={other['id']}", headers=auth("admin"))  # admin's own project only
    assert_error(r, 404, f"Quota {other['id']} could not be found.")


# ---- clusters (for quota enforcement and stats) ---------------------------------------------


@pytest.fixture
def template(api: TestClient, auth: Auth, register_image: Callable[..., dict[str, Any]]) -> str:
    """A docker-COE template visible to every project (one master + one node per cluster)."""
    register_image("flotilla-node", "debian")
    body = {"name": "shared", "coe": "docker", "image_id": "flotilla-node", "public": True}
    r = api.post("/v1/clustertemplates", json=body, headers=auth("admin"))
    assert r.status_code == 201, r.text
    uuid: str = r.json()["uuid"]
    return uuid


def create_cluster(
    api: TestClient, auth: Auth, who: str, template: str, view: str = "clusters"
) -> httpx.Response:
    key = "cluster_template_id" if view == "clusters" else "baymodel_id"
    r: httpx.Response = api.post(f"/v1/{view}", json={key: template}, headers=auth(who, "latest"))
    return r


def test_the_cluster_quota_is_enforced_on_create(api: TestClient, auth: Auth, template: str) -> None:
    make_quota(api, auth, "p1", 1)
    assert create_cluster(api, auth, "p1_member", template).status_code == 202
    assert_error(
        create_cluster(api, auth, "p1_member", template, view="bays"), 403,
        "Resource limit exceeded: You have reached the maximum clusters per project, 1. "
        "You may delete a cluster to make room for a new one.",
    )  # fmt: skip
    assert create_cluster(api, auth, "p2_member", template).status_code == 202  # p2: the default 20
    api.patch("/v1/quotas/p1/Cluster", json={"hard_limit": 2}, headers=auth("admin"))
    assert create_cluster(api, auth, "p1_member", template).status_code == 202


# ---- stats ----------------------------------------------------------------------------------


def test_stats_with_no_clusters(api: TestClient, auth: Auth) -> None:
    for who in ("admin", "p1_member"):
        r = api.get("/v1/stats", headers=auth(who))
        assert r.status_code == 200, r.text
        assert r.json() == {"clusters": 0, "nodes": 0}


def test_stats_count_clusters_and_every_node(api: TestClient, auth: Auth, template: str) -> None:
    for who in ("p1_member", "p1_member", "p2_member"):
        assert create_cluster(api, auth, who, template).status_code == 202
    assert create_cluster(api, auth, "p1_member", template, view="bays").status_code == 202  # bays count too

    def stats(who: str, query: str = "") -> Any:
        r = api.get(f"/v1/stats{query}", headers=auth(who))
        assert r.status_code == 200, r.text
        return r.json()

    # Each docker cluster: one master + one node; masters count as nodes.
    assert stats("p1_member") == {"clusters": 3, "nodes": 6}
    assert stats("p1_reader", "?project_id=p1") == {"clusters": 3, "nodes": 6}
    assert stats("p2_member") == {"clusters": 1, "nodes": 2}
    assert stats("admin") == {"clusters": 4, "nodes": 8}
    assert stats("admin", "?project_id=p2&type=cluster") == {"clusters": 1, "nodes": 2}
    assert stats("admin", "?project_id=nobody") == {"clusters": 0, "nodes": 0}
    assert stats("p1_member", "?type=CLUSTER") == {"clusters": 3, "nodes": 6}
    assert stats("admin", "/") == {"clusters": 4, "nodes": 8}


def test_stats_refuse_other_projects_bad_types_and_unknown_parameters(api: TestClient, auth: Auth) -> None:
    assert_error(api.get("/v1/stats?project_id=p2", headers=auth("p1_member")), 403, "Not authorized.")
    assert_error(
        api.get("/v1/stats?type=node", headers=auth("admin")),
        400,
        "Invalid stats type. Allowed values are 'cluster'",
    )
    assert_error(
        api.get("/v1/stats?all_tenants=1", headers=auth("admin")), 400, 'Unknown argument: "all_tenants"'
    )
    assert api.get("/v1/stats").status_code == 401


# ---- mservices ------------------------------------------------------------------------------


def test_mservices_empty(api: TestClient, auth: Auth) -> None:
    r = api.get("/v1/mservices", headers=auth("admin"))
    assert r.status_code == 200, r.text
    assert r.json() == {"mservices": []}


def test_mservices_are_admin_only(api: TestClient, auth: Auth) -> None:
    for who in ("p1_member", "p1_reader"):
        assert_error(
            api.get("/v1/mservices", headers=auth(who)), 403,
            "Policy doesn't allow magnum-service:get_all to be performed.",
        )  # fmt: skip


def test_mservices_state_follows_the_heartbeat(api: TestClient, auth: Auth, app: FastAPI) -> None:
    db = app.state.runtime.db
    with db.session() as s:
        service_heartbeats.heartbeat(s, host="node-a:1", binary="magnum-conductor")
        service_heartbeats.heartbeat(s, host="node-b:2", binary="magnum-conductor")
    with db.session() as s:
        service_heartbeats.heartbeat(s, host="node-a:1", binary="magnum-conductor")
        stale = utcnow() - timedelta(seconds=app.state.runtime.settings.conductor.service_down_time + 5)
        s.execute(update(m.Service).where(m.Service.host == "node-b:2").values(last_seen_up=stale))
    r = api.get("/v1/mservices/", headers=auth("admin"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert list(body) == ["mservices"]  # never a next link
    a, b = body["mservices"]
    assert list(a) == SERVICE_KEYS
    assert (a["host"], a["binary"], a["state"], a["report_count"]) == (
        "node-a:1",
        "magnum-conductor",
        "up",
        2,
    )
    assert (a["disabled"], a["disabled_reason"]) == (False, None)
    assert a["created_at"].endswith("+00:00") and a["updated_at"] is not None
    assert (b["host"], b["state"], b["report_count"]) == ("node-b:2", "down", 1)
    assert_error(api.get("/v1/mservices?limit=1", headers=auth("admin")), 400, 'Unknown argument: "limit"')
