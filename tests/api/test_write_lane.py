"""The template create (``flotilla.api.writelane``, its DBAPI write path) answers exactly
what the FastAPI route answers, and stores what the ORM path stores.

Two apps on one database: one with the write lane (the default), one without
(``create_app(..., write_lane=False)``: the same requests through FastAPI's router). For
good and bad bodies, callers and microversions, every response must match byte for byte
once the values a create draws itself (uuid, generated name, creation time) are set
aside. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import String, cast, select

from flotilla.api.app import create_app
from flotilla.api.writes import write_dbapi
from flotilla.context import RequestContext
from flotilla.db import models as m
from flotilla.db.engine import CHECKPOINT_EVERY, Busy
from flotilla.services import template_inserts, templates
from flotilla.services import tokens as token_service
from flotilla.services.commands import CreateTemplate, TemplateFields
from flotilla.settings import Settings

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAA/t6WaN9k/Dk/oEHxPtz533ZQOEO3cFLHE9eAHg1kQ lane"
TAKEN = "0b5cf2b4-8f0e-4a4b-9d55-34a1b0c2d3e4"
#: Stands for a new uuid in a body: each app is sent a fresh one.
FRESH = "00000000-0000-4000-8000-000000000000"

Pair = tuple[TestClient, TestClient, dict[str, str], FastAPI]


@pytest.fixture
def pair(settings: Settings) -> Iterator[Pair]:
    laned, routed = create_app(settings), create_app(settings, write_lane=False)
    toks: dict[str, str] = {}
    with laned.state.runtime.db.session() as s:
        for name, (user, project, role) in {
            "admin": ("admin", "admin", "admin"), "m1": ("u1", "p1", "member"), "r1": ("r1", "p1", "reader"),
        }.items():  # fmt: skip
            toks[name] = token_service.create(s, user_id=user, project_id=project, roles=[role])
    with TestClient(laned) as a, TestClient(routed) as b:
        admin = {"X-Auth-Token": toks["admin"]}
        for body in ({"name": "img", "os_distro": "debian"}, {"name": "bare"}):
            assert a.post("/local/v1/images", json=body, headers=admin).status_code == 201
        assert a.post("/local/v1/networks", json={"name": "private-net"}, headers=admin).status_code == 201
        for who in ("m1", "admin"):
            r = a.post(
                "/local/v1/keypairs",
                json={"name": "k", "public_key": KEY},
                headers={"X-Auth-Token": toks[who]},
            )
            assert r.status_code == 201, r.text
        r = a.post(
            "/v1/clustertemplates", json={"coe": "swarm", "image_id": "img", "uuid": TAKEN}, headers=admin
        )
        assert r.status_code == 201, r.text
        yield a, b, toks, laned
    laned.state.runtime.db.dispose()
    routed.state.runtime.db.dispose()


GOOD: dict[str, Any] = {
    "name": "t", "coe": "kubernetes", "image_id": "img", "keypair_id": "k", "flavor_id": "m1.small",
    "master_flavor_id": "m1.medium", "external_network_id": "public", "dns_nameserver": "8.8.8.8",
    "docker_volume_size": 3, "docker_storage_driver": "devicemapper", "labels": {"flannel_backend": "vxlan", "n": 12},
    "tags": "a,b", "http_proxy": "http://p:3128", "registry_enabled": "yes", "master_lb_enabled": 1,
}  # fmt: skip


def _bodies() -> list[Any]:
    minimal = {"coe": "swarm", "image_id": "img"}
    return [
        GOOD, minimal, {**minimal, "name": "ünï ☃ \u2028 \"q\\"}, {**minimal, "name": "t"},  # names need not be unique
        {**minimal, "uuid": FRESH}, {**minimal, "uuid": TAKEN}, {**minimal, "uuid": "nope"},
        {**minimal, "fixed_network": "private-net"}, {**minimal, "fixed_network": "gone"},  # the ORM lookups
        {**minimal, "image_id": "missing"}, {**minimal, "image_id": "bare"}, {**minimal, "flavor_id": "m9"},
        {**minimal, "master_flavor_id": "m1.small", "flavor_id": "m1.small"}, {**minimal, "external_network_id": "private-net"},
        {"image_id": "img"}, {"coe": "swarm"}, {"coe": 7, "image_id": "img"}, {"coe": "nomadic", "image_id": "img"},
        {**minimal, "bogus": 1}, {**minimal, "project_id": "p9"}, {**minimal, "links": []}, {**minimal, "labels": "a=b"},
        {**minimal, "labels": {"a": [1]}}, {**minimal, "labels": {"flannel_backend": "carrier-pigeon"}},
        {**minimal, "labels": {f"l{i}": "v" for i in range(101)}}, {**minimal, "labels": {"auto_healing_enabled": "sure"}},
        {**minimal, "dns_nameserver": "8.8.8.8,1.1.1.1"}, {**minimal, "dns_nameserver": "dns.example"},
        {**minimal, "docker_volume_size": "3"}, {**minimal, "docker_volume_size": 0}, {**minimal, "docker_volume_size": True},
        {**minimal, "docker_storage_driver": "devicemapper", "docker_volume_size": 2}, {**minimal, "docker_storage_driver": "zfs"},
        {**minimal, "server_type": "cloud"}, {**minimal, "network_driver": "calico"}, {**minimal, "volume_driver": "cinder"},
        {**minimal, "tls_disabled": "maybe"}, {**minimal, "public": True}, {**minimal, "hidden": True},
        {**minimal, "apiserver_port": 80}, {**minimal, "name": ""}, {**minimal, "name": "x" * 256}, {**minimal, "name": None},
        {**minimal, "coe": None}, {**minimal, "name": "nul\x00"}, [minimal], "text", None, 3,
    ]  # fmt: skip


def _answer(
    client: TestClient, path: str, headers: dict[str, str], content: bytes
) -> tuple[int, dict[str, str], bytes]:
    r = client.post(
        path, content=content.replace(FRESH.encode(), str(uuid.uuid4()).encode()), headers=headers
    )
    kept = {k: v for k, v in r.headers.items() if k != "x-openstack-request-id"}
    body = r.content
    if r.status_code == 201:  # set aside what a create draws itself
        drawn = r.json()
        body = body.replace(drawn["uuid"].encode(), b"UUID")
        kept = {k: v.replace(drawn["uuid"], "UUID") for k, v in kept.items()}
        for key in ("name", "created_at"):
            body = body.replace(
                f'"{key}":{json.dumps(drawn[key], ensure_ascii=False)}'.encode(), f'"{key}":"-"'.encode()
            )
        kept["content-length"] = str(len(body))
    return r.status_code, kept, body


def _same(pair: Pair, path: str, headers: dict[str, str], content: bytes) -> int:
    laned, routed, _, _ = pair
    a = _answer(laned, path, headers, content)
    b = _answer(routed, path, headers, content)
    assert a == b, (path, headers, content[:200])
    return a[0]


def test_the_write_lane_answers_what_the_route_answers(pair: Pair) -> None:
    toks = pair[2]
    json_type = {"Content-Type": "application/json"}
    seen: set[int] = set()
    for path in ("/v1/clustertemplates", "/v1/baymodels", "/clustertemplates/", "/v1/baymodels/"):
        for body in _bodies():
            for who in ("m1", "admin"):
                headers = {
                    "X-Auth-Token": toks[who],
                    "OpenStack-API-Version": "container-infra latest",
                    **json_type,
                }
                seen.add(_same(pair, path, headers, json.dumps(body).encode()))
    member = {"X-Auth-Token": toks["m1"], **json_type}
    good = json.dumps(GOOD).encode()
    for headers in (
        {}, {"X-Auth-Token": "flt_nope"}, {"X-Auth-Token": toks["r1"]}, {**member, "OpenStack-API-Version": "container-infra 9.9"},
        {**member, "OpenStack-API-Version": "container-infra 1.x"}, {**member, "OpenStack-API-Version": "container-infra 1.1"},
        {**member, "Accept": "application/xml"}, {**member, "User-Agent": "python-magnumclient", "Accept-Encoding": "identity"},
        {"X-Auth-Token": toks["m1"], "Content-Type": "text/plain"}, {"X-Auth-Token": toks["m1"]},
    ):  # fmt: skip
        for path in ("/v1/clustertemplates", "/v1/baymodels"):
            for content in (good, b"", b"{not json", b"[" * 200 + b"]" * 200, b'{"coe": "\\ud800"}'):
                seen.add(_same(pair, path, headers, content))
    assert {201, 400, 401, 403, 406, 409} <= seen  # the comparison covered the error paths


def test_the_created_template_reads_back_as_answered(pair: Pair) -> None:
    laned, _, toks, _ = pair
    member = {"X-Auth-Token": toks["m1"], "OpenStack-API-Version": "container-infra latest"}
    for coll in ("clustertemplates", "baymodels"):
        body = {**GOOD, "labels": {"flannel_backend": "vxlan", "n": "12"}}  # baymodels take strings only
        r = laned.post(f"/v1/{coll}", json=body, headers=member)
        assert r.status_code == 201, r.text
        assert r.headers["location"] == f"http://testserver/v1/{coll}/{r.json()['uuid']}"
        shown = laned.get(f"/v1/{coll}/{r.json()['uuid']}", headers=member)
        assert shown.status_code == 200 and shown.content == r.content
        assert shown.json()["docker_storage_driver"] == "overlay2"  # what the local provider serves
        assert shown.json()["labels"] == {"flannel_backend": "vxlan", "n": "12"}


def test_the_dbapi_path_stores_what_the_session_path_stores(pair: Pair) -> None:
    db = pair[3].state.runtime.db
    ctx = RequestContext(user_id="u1", project_id="p1", roles=frozenset({"member"}))
    values = {k: v for k, v in GOOD.items() if k not in ("registry_enabled", "master_lb_enabled")}
    cmd = CreateTemplate("clustertemplate", TemplateFields.of({**values, "labels": {"ü": "☃", "n": "1"}}))
    with db.session() as s:
        by_session = templates.create(s, ctx, cmd).uuid
    with db.dbapi_write() as conn:
        answered = template_inserts.insert_template(conn, db.engine.dialect, ctx, cmd)
    table = m.ClusterTemplate.__table__
    with db.reader() as s:
        rows = {r.uuid: dict(r._mapping) for r in s.execute(select(*table.columns))}
        stored_labels = {
            r[0]: r[1] for r in s.execute(select(table.c.uuid, cast(table.c.labels, String)))
        }  # the JSON text itself
    a, b = rows[by_session], rows[answered["uuid"]]
    assert {k: v for k, v in b.items() if k not in ("id", "row_version")} == answered
    drawn = ("id", "uuid", "created_at", "row_version")  # row_version: the database's, per write
    assert {k: v for k, v in a.items() if k not in drawn} == {k: v for k, v in b.items() if k not in drawn}
    assert stored_labels[by_session] == stored_labels[answered["uuid"]]


def test_a_write_waits_its_turn_when_another_writer_holds_sqlite(pair: Pair) -> None:
    """``write_dbapi`` meets a writer holding the lock: ``dbapi_now`` says Busy at once,
    and the write then waits its turn in a worker thread."""
    db = pair[3].state.runtime.db
    if not db.is_sqlite:
        pytest.skip("PostgreSQL writes always run in worker threads")
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with db.session() as s:
            s.execute(select(1))
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(10)
        with pytest.raises(Busy), db.dbapi_now():
            pass

        def work(conn: Any) -> str:
            return str(conn.cursor().execute("SELECT count(*) FROM cluster_templates").fetchone()[0])

        async def write_after_release() -> str:
            asyncio.get_running_loop().call_later(0.05, release.set)
            return await write_dbapi(db, work)

        assert re.fullmatch(r"\d+", asyncio.run(write_after_release()))
    finally:
        release.set()
        holder.join()


def test_a_failed_write_on_the_kept_connection_rolls_back_and_the_next_one_commits(pair: Pair) -> None:
    db = pair[3].state.runtime.db
    if not db.is_sqlite:
        pytest.skip("dbapi_now serves SQLite only")

    def count() -> int:
        with db.reader() as s:
            return len(s.execute(select(m.ClusterTemplate.id)).all())

    before = count()
    sql = "UPDATE cluster_templates SET name = 'changed'"
    with pytest.raises(RuntimeError), db.dbapi_now() as conn:
        conn.cursor().execute(sql)
        raise RuntimeError("the work failed")
    with db.reader() as s:
        assert "changed" not in {r[0] for r in s.execute(select(m.ClusterTemplate.name))}
    with pytest.raises(db.engine.dialect.loaded_dbapi.IntegrityError), db.dbapi_now() as conn:
        conn.cursor().execute("INSERT INTO cluster_templates (uuid) VALUES (?)", (TAKEN,))
    with db.dbapi_now() as conn:
        conn.cursor().execute("DELETE FROM cluster_templates WHERE uuid = ?", (TAKEN,))
    assert count() == before - 1


def test_the_event_loop_writer_checkpoints_the_wal_in_a_thread(pair: Pair, settings: Settings) -> None:
    """The kept connection does not checkpoint in its commits (that would stall the event
    loop); every ``CHECKPOINT_EVERY`` commits a thread writes the WAL back to the file."""
    laned, _, toks, app = pair
    db = app.state.runtime.db
    if not db.is_sqlite:
        pytest.skip("SQLite's WAL only")
    path = db.engine.url.database
    assert path
    with db.dbapi_now() as conn:
        assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    with db.reader() as s:  # start from a WAL written back, nothing pending
        s.connection().exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    size = os.path.getsize(path)
    member = {"X-Auth-Token": toks["m1"]}
    for i in range(CHECKPOINT_EVERY + 1):
        body = {"coe": "swarm", "image_id": "img", "name": f"{i}-" + "n" * 200, "labels": {"x": "y" * 2000}}
        assert laned.post("/v1/clustertemplates", json=body, headers=member).status_code == 201
    for _ in range(200):  # the thread's checkpoint grows the database file
        if os.path.getsize(path) > size:
            break
        time.sleep(0.05)
    assert os.path.getsize(path) > size
