"""The hot reads (``flotilla.api.fastlane``, prepared statements, rendered-row cache) answer
exactly what the FastAPI routes answer, and never serve a stale row.

Two apps on one database: one with the read lane (the default), one without
(``create_app(..., read_lane=False)``: the same requests through FastAPI's router). Every
response must match byte for byte (the request id aside), errors included. On SQLite
and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from flotilla.api.app import create_app
from flotilla.db import models as m
from flotilla.db.prepared import Prepared
from flotilla.services import tokens as token_service
from flotilla.settings import Settings

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAA/t6WaN9k/Dk/oEHxPtz533ZQOEO3cFLHE9eAHg1kQ lane"


@pytest.fixture
def pair(settings: Settings) -> Iterator[tuple[TestClient, TestClient, dict[str, str], FastAPI]]:
    laned, routed = create_app(settings), create_app(settings, read_lane=False)
    toks: dict[str, str] = {}
    with laned.state.runtime.db.session() as s:
        for name, (user, project, role) in {
            "admin": ("admin", "admin", "admin"), "m1": ("u1", "p1", "member"),
            "r1": ("r1", "p1", "reader"), "m2": ("u2", "p2", "member"),
        }.items():  # fmt: skip
            toks[name] = token_service.create(s, user_id=user, project_id=project, roles=[role])
    with TestClient(laned) as a, TestClient(routed) as b:
        yield a, b, toks, laned
    laned.state.runtime.db.dispose()
    routed.state.runtime.db.dispose()


def _load(client: TestClient, toks: dict[str, str]) -> dict[str, list[str]]:
    def h(who: str) -> dict[str, str]:
        return {"X-Auth-Token": toks[who], "OpenStack-API-Version": "container-infra latest"}

    assert (
        client.post(
            "/local/v1/images", json={"name": "img", "os_distro": "debian"}, headers=h("admin")
        ).status_code
        == 201
    )
    ids: dict[str, list[str]] = {}
    for who in ("m1", "m2", "admin"):
        assert (
            client.post(
                "/local/v1/keypairs", json={"name": "k", "public_key": KEY}, headers=h(who)
            ).status_code
            == 201
        )
        for i, name in enumerate(("ünï ☃", "dup", "dup", "x\u2028y", 'q"\\')):
            body: dict[str, Any] = {
                "name": name, "coe": "swarm" if i % 2 else "kubernetes", "image_id": "img", "keypair_id": "k",
                "labels": [{"a": "1"}, {}, {"ü": "☃"}, {"n": "12345678901234567890"}, {"k": "v"}][i],
                "docker_volume_size": i + 1, "public": who == "admin" and i % 2 == 1, "hidden": who == "admin" and i == 3,
            }  # fmt: skip
            r = client.post("/v1/clustertemplates", json=body, headers=h(who))
            assert r.status_code == 201, r.text
            ids.setdefault(f"t-{who}", []).append(r.json()["uuid"])
        if who == "admin":
            continue
        for i, name in enumerate(("c-dup", "c-dup", "c2")):
            body = {
                "name": name,
                "cluster_template_id": ids[f"t-{who}"][0],
                "node_count": i,
                "master_count": 1,
            }
            if i == 2:
                body["labels"] = {"a": "2", "new": "x"}
            r = client.post("/v1/clusters", json=body, headers=h(who))
            assert r.status_code == 202, r.text
            ids.setdefault(f"c-{who}", []).append(r.json()["uuid"])
    return ids


def _paths(ids: dict[str, list[str]]) -> list[str]:
    t1, c1 = ids["t-m1"], ids["c-m1"]
    out = []
    for coll in ("clustertemplates", "baymodels"):
        out += [
            f"/v1/{coll}", f"/v1/{coll}/detail", f"/v1/{coll}?limit=2", f"/v1/{coll}?limit=2&sort_key=name&sort_dir=desc",
            f"/v1/{coll}?marker={t1[1]}", f"/v1/{coll}?marker={t1[1]}&sort_key=name", f"/v1/{coll}?marker=nope",
            f"/v1/{coll}?limit=0", f"/v1/{coll}?limit=x", f"/v1/{coll}?sort_key=labels", f"/v1/{coll}?sort_dir=up",
            f"/v1/{coll}?bogus=1", f"/{coll}/", f"/v1/{coll}/dup", f"/v1/{coll}/ünï ☃", f"/v1/{coll}/nope",
            f"/v1/{coll}/{t1[0]}?x=1", f"/v1/{coll}/a/b",
            *(f"/v1/{coll}/{u}" for key in ("t-m1", "t-m2", "t-admin") for u in ids[key]),
        ]  # fmt: skip
    for coll in ("clusters", "bays"):
        out += [
            f"/v1/{coll}", f"/v1/{coll}/detail", f"/v1/{coll}?limit=1", f"/v1/{coll}?limit=2&sort_key=name&sort_dir=desc",
            f"/v1/{coll}?marker={c1[1]}", f"/v1/{coll}?marker=bad", f"/v1/{coll}?sort_key=nope", f"/{coll}",
            f"/v1/{coll}/c-dup", f"/v1/{coll}/c2", f"/v1/{coll}/nope", f"/v1/{coll}/{c1[0]}?q=1",
            *(f"/v1/{coll}/{u}" for key in ("c-m1", "c-m2") for u in ids[key]),
        ]  # fmt: skip
    return out


def _answer(
    client: TestClient, method: str, path: str, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    r = client.request(method, path, headers=headers)
    kept = {k: v for k, v in r.headers.items() if k != "x-openstack-request-id"}
    return r.status_code, kept, r.content


def test_the_read_lane_answers_what_the_routes_answer(
    pair: tuple[TestClient, TestClient, dict[str, str], FastAPI],
) -> None:
    laned, routed, toks, _ = pair
    paths = _paths(_load(laned, toks))
    callers: list[dict[str, str]] = [
        {"X-Auth-Token": toks["admin"]}, {"X-Auth-Token": toks["m1"], "OpenStack-API-Version": "container-infra latest"},
        {"X-Auth-Token": toks["r1"]}, {"X-Auth-Token": toks["m2"]}, {}, {"X-Auth-Token": "flt_nope"},
        {"X-Auth-Token": toks["m1"], "OpenStack-API-Version": "container-infra 9.9"},
        {"X-Auth-Token": toks["m1"], "User-Agent": "python-magnumclient", "Accept-Encoding": "identity"},
    ]  # fmt: skip
    seen: set[int] = set()
    for path in paths:
        for headers in callers:
            for method in ("GET", "HEAD"):
                a = _answer(laned, method, path, headers)
                assert a == _answer(routed, method, path, headers), (method, path, headers)
                seen.add(a[0])
    assert {200, 400, 401, 404, 405, 406, 409} <= seen  # the comparison covered the error paths


def test_a_row_changed_behind_the_api_is_listed_and_shown_as_it_now_is(
    pair: tuple[TestClient, TestClient, dict[str, str], FastAPI],
) -> None:
    """The rendered-row cache is keyed by the row's stored values: a change made by another
    process (here: straight in the database) shows in the next list and show."""
    laned, _, toks, app = pair
    ids = _load(laned, toks)
    member = {"X-Auth-Token": toks["m1"]}

    def listed(coll: str, key: str) -> dict[str, Any]:
        r = laned.get(f"/v1/{coll}", headers=member)
        assert r.status_code == 200, r.text
        return {row["uuid"]: row for row in r.json()[key]}

    def shown(coll: str, uuid: str) -> dict[str, Any]:
        r = laned.get(f"/v1/{coll}/{uuid}", headers=member)
        assert r.status_code == 200, r.text
        answer: dict[str, Any] = r.json()
        return answer

    template, cluster = ids["t-m1"][1], ids["c-m1"][0]
    assert listed("clustertemplates", "clustertemplates")[template]["name"] == "dup"
    assert shown("clustertemplates", template)["name"] == "dup"
    assert listed("clusters", "clusters")[cluster]["status"] == "CREATE_IN_PROGRESS"
    assert shown("clusters", cluster)["status"] == "CREATE_IN_PROGRESS"
    with app.state.runtime.db.session() as s:
        s.execute(update(m.ClusterTemplate).where(m.ClusterTemplate.uuid == template).values(name="renamed"))
        s.execute(update(m.Cluster).where(m.Cluster.uuid == cluster).values(status="CREATE_FAILED"))
        s.execute(update(m.NodeGroup).where(m.NodeGroup.cluster_id == cluster).values(node_count=7))
    assert listed("clustertemplates", "clustertemplates")[template]["name"] == "renamed"
    assert shown("clustertemplates", template)["name"] == "renamed"
    row = listed("clusters", "clusters")[cluster]
    assert (row["status"], row["master_count"], row["node_count"]) == ("CREATE_FAILED", 7, 7)
    row = shown("clusters", cluster)
    assert (row["status"], row["master_count"], row["node_count"]) == ("CREATE_FAILED", 7, 7)
    assert row["faults"]  # a failed cluster's show says why
    r = laned.patch(
        f"/v1/clustertemplates/{ids['t-m1'][4]}", json=[{"op": "replace", "path": "/name", "value": "patched"}],
        headers=member,
    )  # fmt: skip
    assert r.status_code == 200, r.text
    assert listed("baymodels", "baymodels")[ids["t-m1"][4]]["name"] == "patched"


def test_a_prepared_select_returns_what_the_session_returns(
    pair: tuple[TestClient, TestClient, dict[str, str], FastAPI],
) -> None:
    """Dates (timezone-aware), JSON, booleans and NULLs convert as SQLAlchemy converts them."""
    laned, _, toks, app = pair
    _load(laned, toks)
    db = app.state.runtime.db
    stmt = select(*m.ClusterTemplate.__table__.columns).order_by(m.ClusterTemplate.id)
    with db.reader() as s:
        expected = [dict(r._mapping) for r in s.execute(stmt)]
    got = Prepared(stmt).rows(db.read_engine, {})
    assert got == expected
    assert got[0]["created_at"].tzinfo is not None and isinstance(got[0]["public"], bool)
    assert any(r["labels"] == {"ü": "☃"} for r in got)
