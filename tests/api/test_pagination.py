"""limit / marker / sort_key / sort_dir and ``next`` links (reference §4)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

Auth = Callable[..., dict[str, str]]
NAMES = ["delta", "alpha", "echo", "charlie", "bravo", "foxtrot", "golf"]


@pytest.fixture
def seven(api: TestClient, auth: Auth, register_image: Callable[..., dict[str, Any]]) -> list[dict[str, Any]]:
    """Seven p1 templates in creation order, plus one of p2 that p1 must never see."""
    register_image("flotilla-node", "debian")
    out = []
    for i, name in enumerate(NAMES):
        body = {"name": name, "coe": "swarm", "image_id": "flotilla-node", "docker_volume_size": 1 + i % 3}
        r = api.post("/v1/clustertemplates", json=body, headers=auth("p1_member"))
        assert r.status_code == 201, r.text
        out.append(r.json())
    r = api.post(
        "/v1/clustertemplates",
        json={"name": "other", "coe": "swarm", "image_id": "flotilla-node"},
        headers=auth("p2_member"),
    )
    assert r.status_code == 201
    return out


def get(api: TestClient, auth: Auth, url: str, coll: str = "clustertemplates") -> dict[str, Any]:
    r = api.get(url, headers=auth("p1_member"))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert set(body) <= {coll, "next"}
    return body


def error(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    msg: str = r.json()["errors"][0]["detail"]
    return msg


def follow(api: TestClient, auth: Auth, url: str, coll: str = "clustertemplates") -> tuple[list[str], int]:
    """Follow ``next`` the way client 2.17 does (drop scheme and host); returns names and page count."""
    seen: list[str] = []
    pages = 0
    while url:
        body = get(api, auth, url, coll)
        pages += 1
        seen += [t["name"] for t in body[coll]]
        nxt = body.get("next")
        if nxt is None:
            break
        parts = urlsplit(nxt)
        assert (parts.scheme, parts.netloc) == ("http", "testserver")
        assert parts.path.startswith("/v1/")
        url = f"{parts.path}?{parts.query}"
        assert pages < 20, "next links do not end"
    return seen, pages


def test_default_order_is_creation_order(api: TestClient, auth: Auth, seven: list[dict[str, Any]]) -> None:
    body = get(api, auth, "/v1/clustertemplates")
    assert [t["name"] for t in body["clustertemplates"]] == NAMES
    assert "next" not in body  # not full: 7 < 1000


def test_limit_and_next_link(api: TestClient, auth: Auth, seven: list[dict[str, Any]]) -> None:
    body = get(api, auth, "/v1/clustertemplates?limit=3")
    assert [t["name"] for t in body["clustertemplates"]] == NAMES[:3]
    parts = urlsplit(body["next"])
    assert parts.path == "/v1/clustertemplates"
    assert parse_qs(parts.query) == {
        "sort_key": ["id"], "sort_dir": ["asc"], "limit": ["3"], "marker": [seven[2]["uuid"]],
    }  # fmt: skip


def test_marker(api: TestClient, auth: Auth, seven: list[dict[str, Any]]) -> None:
    body = get(api, auth, f"/v1/clustertemplates?marker={seven[4]['uuid']}")
    assert [t["name"] for t in body["clustertemplates"]] == NAMES[5:]
    assert "next" not in body


def test_next_only_when_the_page_is_full(api: TestClient, auth: Auth, seven: list[dict[str, Any]]) -> None:
    assert "next" in get(api, auth, "/v1/clustertemplates?limit=7")  # exactly full
    assert "next" not in get(api, auth, "/v1/clustertemplates?limit=8")
    last = get(api, auth, f"/v1/clustertemplates?limit=2&marker={seven[4]['uuid']}")
    assert [t["name"] for t in last["clustertemplates"]] == NAMES[5:]
    assert "next" in last
    empty = get(api, auth, f"/v1/clustertemplates?limit=2&marker={seven[6]['uuid']}")
    assert empty == {"clustertemplates": []}


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 50])
def test_following_next_reaches_every_item_once(
    api: TestClient, auth: Auth, seven: list[dict[str, Any]], limit: int
) -> None:
    seen, pages = follow(api, auth, f"/v1/clustertemplates?limit={limit}")
    assert seen == NAMES
    assert pages == len(NAMES) // limit + 1


@pytest.mark.parametrize(
    ("key", "direction"),
    [("name", "asc"), ("name", "desc"), ("docker_volume_size", "asc"), ("docker_volume_size", "desc"),
     ("created_at", "desc"), ("id", "desc")],
)  # fmt: skip
def test_sorting_and_paging_agree(
    api: TestClient, auth: Auth, seven: list[dict[str, Any]], key: str, direction: str
) -> None:
    whole = get(api, auth, f"/v1/clustertemplates?sort_key={key}&sort_dir={direction}")["clustertemplates"]
    names = [t["name"] for t in whole]
    assert sorted(names) == sorted(NAMES)
    if key == "name":
        assert names == sorted(NAMES, reverse=direction == "desc")
    if key == "docker_volume_size":  # ties broken by id, in the same direction
        by = {t["name"]: (t["docker_volume_size"], NAMES.index(t["name"])) for t in whole}
        assert names == sorted(NAMES, key=lambda n: by[n], reverse=direction == "desc")
    if key in ("id", "created_at"):
        assert names == NAMES[::-1]
    seen, _ = follow(api, auth, f"/v1/clustertemplates?sort_key={key}&sort_dir={direction}&limit=2")
    assert seen == names


def test_detail_and_baymodels_next_links(api: TestClient, auth: Auth, seven: list[dict[str, Any]]) -> None:
    body = get(api, auth, "/v1/clustertemplates/detail?limit=4")
    assert urlsplit(body["next"]).path == "/v1/clustertemplates/detail"
    body = get(api, auth, "/baymodels/?limit=4", "baymodels")
    assert urlsplit(body["next"]).path == "/v1/baymodels"
    seen, _ = follow(api, auth, "/v1/baymodels?limit=4", "baymodels")
    assert seen == NAMES


def test_limit_is_capped_by_max_limit(
    api: TestClient, app: FastAPI, auth: Auth, seven: list[dict[str, Any]]
) -> None:
    app.state.runtime.settings.max_limit = 3
    body = get(api, auth, "/v1/clustertemplates?limit=100")
    assert len(body["clustertemplates"]) == 3
    assert parse_qs(urlsplit(body["next"]).query)["limit"] == ["3"]
    body = get(api, auth, "/v1/clustertemplates")  # no limit: max_limit, and a full page gets next
    assert len(body["clustertemplates"]) == 3 and "next" in body
    seen, pages = follow(api, auth, "/v1/clustertemplates")
    assert seen == NAMES and pages == 3


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ("limit=0", 400, "Limit must be positive"),
        ("limit=-5", 400, "Limit must be positive"),
        ("limit=ten", 400, "Invalid input for field/attribute limit. Value: 'ten'. Expected an integer."),
        ("sort_key=colour", 400, 'The sort_key value "colour" is an invalid field for sorting'),
        ("sort_dir=up", 400, "Invalid sort direction: up. Acceptable values are 'asc' or 'desc'"),
        (
            "marker=not-a-uuid",
            400,
            "Invalid input for field/attribute marker. Value: 'not-a-uuid'. Expected a UUID.",
        ),
        (
            "marker=6a1e0000-0000-4000-8000-000000000000",
            404,
            "ClusterTemplate 6a1e0000-0000-4000-8000-000000000000 could not be found.",
        ),
    ],
)
def test_invalid_parameters(
    api: TestClient, auth: Auth, seven: list[dict[str, Any]], query: str, status: int, message: str
) -> None:
    assert error(api.get(f"/v1/clustertemplates?{query}", headers=auth("p1_member")), status) == message


def test_another_projects_uuid_is_an_unknown_marker(
    api: TestClient, auth: Auth, seven: list[dict[str, Any]]
) -> None:
    other = api.get("/v1/clustertemplates", headers=auth("p2_member")).json()["clustertemplates"][0]
    assert other["name"] == "other"
    r = api.get(f"/v1/clustertemplates?marker={other['uuid']}", headers=auth("p1_member"))
    assert error(r, 404) == f"ClusterTemplate {other['uuid']} could not be found."
    r = api.get(f"/v1/baymodels?marker={other['uuid']}", headers=auth("p1_member"))
    assert error(r, 404) == f"ClusterTemplate {other['uuid']} could not be found."


def test_admin_pages_across_projects(api: TestClient, auth: Auth, seven: list[dict[str, Any]]) -> None:
    seen: list[str] = []
    url = "/v1/clustertemplates?limit=3"
    while url:
        body = api.get(url, headers=auth("admin")).json()
        seen += [t["name"] for t in body["clustertemplates"]]
        url = body["next"].removeprefix("http://testserver") if "next" in body else ""
    assert seen == [*NAMES, "other"]
