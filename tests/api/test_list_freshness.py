"""A list or cluster show served from rendered JSON is never stale, whoever changed the database.

Lists keep each row's rendered JSON under the row's uuid and ``row_version`` (which the
database's own triggers change on every insert and update, migration 0007, and for a
cluster on every insert, update and delete of one of its nodegroups, migration 0008),
and read only those columns when every row is rendered already; a cluster show keeps its
answer under the cluster's uuid and version and its template's version, and reads just
those when it was shown before; a template show under the uuid and version of the row it
read (``api/render_cache.py``). Here the writes come through a
second ``Database`` (its own connections, as another API process or the conductor has),
through the same service functions the conductor uses, the ORM, Core statements and plain
SQL text; after each one every list and show of the app that has everything
rendered must be what a fresh app renders from scratch. On SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select, text, update
from sqlalchemy.pool import NullPool

from flotilla.api.app import create_app
from flotilla.db import migrate
from flotilla.db import models as m
from flotilla.db.engine import Database
from flotilla.lifecycle import Event
from flotilla.services import cluster_reports, operations
from flotilla.services import tokens as token_service
from flotilla.settings import ConductorSettings, Settings

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAA/t6WaN9k/Dk/oEHxPtz533ZQOEO3cFLHE9eAHg1kQ fresh"
COUNT = "x-flotilla-sql-statements"
LISTS = ("/v1/clustertemplates", "/v1/baymodels", "/v1/clusters", "/v1/bays", "/v1/clustertemplates?limit=2")


class Apps:
    def __init__(self, settings: Settings, client: TestClient, headers: dict[str, dict[str, str]]) -> None:
        self.settings, self.client, self.headers = settings, client, headers
        #: The conductor's (or another process's) own connections.
        self.other = Database(settings)
        #: Cluster shows compared too (by uuid and by name, as clusters and as bays).
        self.shows: list[str] = []

    def listed(self, path: str, who: str = "member") -> Any:
        r = self.client.get(path, headers=self.headers[who])
        assert r.status_code == 200, r.text
        return r

    def paths(self) -> tuple[str, ...]:
        return (*LISTS, *self.shows)

    def assert_fresh(self) -> None:
        """Every list and show (member's and admin's) equals what an app with nothing
        rendered answers (the same status and body: a show of a cluster gone is a 404)."""
        fresh_app = create_app(self.settings)
        try:
            with TestClient(fresh_app) as fresh:
                for who in ("member", "admin"):
                    for path in self.paths():
                        cached = self.client.get(path, headers=self.headers[who])
                        expected = fresh.get(path, headers=self.headers[who])
                        assert cached.status_code == expected.status_code, (who, path, cached.text)
                        assert cached.content == expected.content, (who, path)
        finally:
            fresh_app.state.runtime.db.dispose()

    def shown(self, path: str) -> Any:
        return self.listed(path).json()


@pytest.fixture
def apps(tmp_path: Path, db_url: str) -> Iterator[Apps]:
    settings = Settings(
        data_dir=tmp_path, database_url=db_url, enabled_providers=["fake"], default_provider="fake",
        conductor=ConductorSettings(enabled=False), debug_sql_count=True,
    )  # fmt: skip
    app: FastAPI = create_app(settings)
    app.state.runtime.auth.cache.ttl = 3600  # statement counts without token lookups
    with app.state.runtime.db.session() as s:
        admin = token_service.create(s, user_id="admin", project_id="admin", roles=["admin"])
        member = token_service.create(s, user_id="m", project_id="p1", roles=["member"])
    headers = {
        "admin": {"X-Auth-Token": admin, "OpenStack-API-Version": "container-infra latest"},
        "member": {"X-Auth-Token": member, "OpenStack-API-Version": "container-infra latest"},
    }
    with TestClient(app) as client:
        out = Apps(settings, client, headers)
        try:
            yield out
        finally:
            out.other.dispose()
    app.state.runtime.db.dispose()


def _setup(apps: Apps) -> tuple[list[str], list[str]]:
    c, h = apps.client, apps.headers
    assert (
        c.post(
            "/local/v1/images", json={"name": "node", "os_distro": "debian"}, headers=h["admin"]
        ).status_code
        == 201
    )
    assert (
        c.post("/local/v1/keypairs", json={"name": "k", "public_key": KEY}, headers=h["member"]).status_code
        == 201
    )
    templates = []
    for i in range(3):
        body = {
            "name": f"t{i}",
            "coe": "swarm",
            "image_id": "node",
            "keypair_id": "k",
            "labels": {"i": str(i)},
        }
        r = c.post("/v1/clustertemplates", json=body, headers=h["member"])
        assert r.status_code == 201, r.text
        templates.append(r.json()["uuid"])
    clusters = []
    for i in range(3):
        body = {"name": f"c{i}", "cluster_template_id": templates[0], "node_count": 1, "master_count": 1}
        r = c.post("/v1/clusters", json=body, headers=h["member"])
        assert r.status_code == 202, r.text
        clusters.append(r.json()["uuid"])
    return templates, clusters


def _warm(apps: Apps) -> None:
    """Render every list and show, then check a repeat is answered from the narrow read alone."""
    for who in ("member", "admin"):
        for path in apps.paths():
            # An admin's bay view shows only their own project's (a 404 here).
            r = apps.client.get(path, headers=apps.headers[who])
            assert r.status_code == 200 or (who, r.status_code) == ("admin", 404), (who, path, r.text)
    for path in apps.paths():
        assert apps.listed(path).headers[COUNT] == "1", path


def _show_paths(clusters: list[str], templates: list[str]) -> list[str]:
    return [
        *(f"/v1/clusters/{u}" for u in clusters), "/v1/clusters/c1", f"/v1/bays/{clusters[0]}", "/v1/bays/c0",
        *(f"/v1/clustertemplates/{u}" for u in templates[:2]), "/v1/clustertemplates/t0",
        f"/v1/baymodels/{templates[1]}", "/v1/baymodels/t0",
    ]  # fmt: skip


def test_lists_show_changes_made_through_other_connections(apps: Apps) -> None:
    templates, clusters = _setup(apps)
    apps.shows = _show_paths(clusters, templates)
    _warm(apps)
    apps.assert_fresh()

    # The conductor's status change: a Core UPDATE (compare-and-set) through the repository layer.
    with apps.other.session() as s:
        row = s.scalars(select(m.Cluster).where(m.Cluster.uuid == clusters[0])).one()
        operations.transition(s, row, Event.SUCCEEDED, "done elsewhere")
    listed = {x["uuid"]: x for x in apps.listed("/v1/clusters").json()["clusters"]}
    assert listed[clusters[0]]["status"] == "CREATE_COMPLETE"
    apps.assert_fresh()

    # The health monitor's ORM update.
    _warm(apps)
    with apps.other.session() as s:
        assert cluster_reports.record_health(
            s, clusters[0], "UNHEALTHY", {"api": "down"}, statuses={"CREATE_COMPLETE"}
        )
    listed = {x["uuid"]: x for x in apps.listed("/v1/clusters").json()["clusters"]}
    assert listed[clusters[0]]["health_status"] == "UNHEALTHY"
    apps.assert_fresh()

    # A nodegroup's count (another table: the list's node counts are part of the key).
    _warm(apps)
    with apps.other.session() as s:
        s.execute(
            update(m.NodeGroup)
            .where(m.NodeGroup.cluster_id == clusters[1], m.NodeGroup.role != "master")
            .values(node_count=5)
        )
    listed = {x["uuid"]: x for x in apps.listed("/v1/clusters").json()["clusters"]}
    assert listed[clusters[1]]["node_count"] == 5
    assert apps.shown(f"/v1/clusters/{clusters[1]}")["node_count"] == 5
    apps.assert_fresh()

    # A resize as the API writes it: the ORM, the cluster's row held first (then untouched).
    _warm(apps)
    with apps.other.session() as s:
        s.scalars(select(m.Cluster).where(m.Cluster.uuid == clusters[0]).with_for_update()).one()
        group = s.scalars(
            select(m.NodeGroup).where(m.NodeGroup.cluster_id == clusters[0], m.NodeGroup.role == "master")
        ).one()
        group.node_count = 3
    assert apps.shown(f"/v1/clusters/{clusters[0]}")["master_count"] == 3
    assert apps.shown("/v1/bays/c0")["master_count"] == 3
    apps.assert_fresh()

    # Plain SQL on nodegroups alone: one created, resized, moved to another cluster, deleted.
    def counts(uuid: str) -> tuple[int, int]:
        shown = apps.shown(f"/v1/clusters/{uuid}")
        listed = {x["uuid"]: x for x in apps.listed("/v1/clusters").json()["clusters"]}[uuid]
        assert (listed["master_count"], listed["node_count"]) == (shown["master_count"], shown["node_count"])
        return shown["master_count"], shown["node_count"]

    _warm(apps)
    with apps.other.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO nodegroups (uuid, name, cluster_id, project_id, role, node_count, min_node_count, "
                "is_default, status, created_at) VALUES ('0b7e9a52-1d0c-4c55-9d35-6a3e0f5d7c11', 'extra', :c, "
                "'p1', 'worker', 4, 0, :f, 'CREATE_COMPLETE', CURRENT_TIMESTAMP)"
            ),
            {"c": clusters[2], "f": False},
        )
    assert counts(clusters[2]) == (1, 5)
    apps.assert_fresh()
    steps = (
        ("UPDATE nodegroups SET node_count = 7 WHERE name = 'extra'", {clusters[2]: (1, 8)}),
        ("UPDATE nodegroups SET cluster_id = :to WHERE name = 'extra'", {clusters[2]: (1, 1), clusters[0]: (3, 8)}),
        ("DELETE FROM nodegroups WHERE name = 'extra'", {clusters[0]: (3, 1)}),
    )  # fmt: skip
    for sql, expected in steps:
        _warm(apps)
        with apps.other.engine.begin() as conn:
            conn.execute(text(sql), {"to": clusters[0]} if ":to" in sql else {})
        assert {u: counts(u) for u in expected} == expected, sql
        apps.assert_fresh()

    # A failed cluster's faults name its default nodegroups: a nodegroup renamed shows.
    with apps.other.engine.begin() as conn:
        conn.execute(
            text("UPDATE clusters SET status = 'CREATE_FAILED', status_reason = 'boom' WHERE uuid = :u"),
            {"u": clusters[1]},
        )
    assert set(apps.shown(f"/v1/clusters/{clusters[1]}")["faults"]) == {"default-master", "default-worker"}
    _warm(apps)
    with apps.other.engine.begin() as conn:
        conn.execute(
            text("UPDATE nodegroups SET name = 'workers' WHERE cluster_id = :u AND role = 'worker'"),
            {"u": clusters[1]},
        )
    assert set(apps.shown(f"/v1/clusters/{clusters[1]}")["faults"]) == {"default-master", "workers"}
    apps.assert_fresh()

    # The template's labels (another table: the show's labels_overridden, _added, _skipped).
    _warm(apps)
    with apps.other.engine.begin() as conn:
        conn.execute(
            text("UPDATE cluster_templates SET labels = :l WHERE uuid = :u"),
            {"l": '{"i": "0", "extra": "1"}', "u": templates[0]},
        )
    assert apps.shown(f"/v1/clusters/{clusters[0]}")["labels_skipped"].get("extra") == "1"
    apps.assert_fresh()

    # Plain SQL: a template renamed, another moved to another project, a cluster renamed.
    _warm(apps)
    with apps.other.engine.begin() as conn:
        conn.execute(
            text("UPDATE cluster_templates SET name = 'renamed' WHERE uuid = :u"), {"u": templates[1]}
        )
        conn.execute(
            text("UPDATE cluster_templates SET project_id = 'p2' WHERE uuid = :u"), {"u": templates[2]}
        )
        conn.execute(text("UPDATE clusters SET name = 'moved' WHERE uuid = :u"), {"u": clusters[2]})
    names = {x["uuid"]: x["name"] for x in apps.listed("/v1/clustertemplates").json()["clustertemplates"]}
    assert names == {templates[0]: "t0", templates[1]: "renamed"}
    assert {x["name"] for x in apps.listed("/v1/bays").json()["bays"]} == {"c0", "c1", "moved"}
    apps.assert_fresh()

    # Deleted, then made again with the same uuid and other values (only the key's version tells).
    _warm(apps)
    with apps.other.engine.begin() as conn:
        row = (
            conn.execute(
                select(*m.ClusterTemplate.__table__.columns).where(m.ClusterTemplate.uuid == templates[1])
            )
            .one()
            ._asdict()
        )
        conn.execute(text("DELETE FROM cluster_templates WHERE uuid = :u"), {"u": templates[1]})
    names = {x["uuid"]: x["name"] for x in apps.listed("/v1/clustertemplates").json()["clustertemplates"]}
    assert names == {templates[0]: "t0"}
    with apps.other.engine.begin() as conn:
        del row["id"], row["row_version"]
        conn.execute(m.ClusterTemplate.__table__.insert().values(**{**row, "name": "again"}))
    names = {x["uuid"]: x["name"] for x in apps.listed("/v1/clustertemplates").json()["clustertemplates"]}
    assert names == {templates[0]: "t0", templates[1]: "again"}
    apps.assert_fresh()


def test_a_template_show_is_rendered_once_per_row_version(apps: Apps) -> None:
    """On either database (PostgreSQL's JSON columns come back as dicts, which were no key):
    shown again unchanged, nothing new is rendered; changed elsewhere, it is once."""
    templates, _ = _setup(apps)
    renders = apps.client.app.state.runtime.renders  # type: ignore[attr-defined]
    path = f"/v1/clustertemplates/{templates[0]}"
    first = apps.shown(path)
    rendered = len(renders)
    for _ in range(3):
        assert apps.shown(path) == first
    assert len(renders) == rendered
    with apps.other.engine.begin() as conn:
        conn.execute(text("UPDATE cluster_templates SET labels = :l WHERE uuid = :u"),
                     {"l": '{"i": "0", "new": "1"}', "u": templates[0]})  # fmt: skip
    assert apps.shown(path)["labels"] == {"i": "0", "new": "1"}
    assert len(renders) == rendered + 1
    assert apps.shown(path)["labels"] == {"i": "0", "new": "1"}
    assert len(renders) == rendered + 1


def test_row_version_changes_on_every_write_and_is_no_field(apps: Apps) -> None:
    templates, clusters = _setup(apps)

    def version(table: Any, uuid: str) -> int:
        with apps.other.engine.connect() as conn:
            return int(conn.execute(select(table.c.row_version).where(table.c.uuid == uuid)).scalar_one())

    t, c = m.ClusterTemplate.__table__, m.Cluster.__table__
    seen = {version(t, templates[0]), version(c, clusters[0])}
    with apps.other.engine.begin() as conn:
        conn.execute(update(t).where(t.c.uuid == templates[0]).values(name="x"))
        conn.execute(update(c).where(c.c.uuid == clusters[0]).values(status_reason="y"))
    seen |= {version(t, templates[0]), version(c, clusters[0])}
    assert len(seen) == 4 and 0 not in seen
    for path in (
        "/v1/clustertemplates",
        f"/v1/clustertemplates/{templates[0]}",
        "/v1/clusters",
        f"/v1/clusters/{clusters[0]}",
        "/v1/baymodels",
    ):
        assert "row_version" not in apps.listed(path).text, path
    r = apps.client.get("/v1/clustertemplates?sort_key=row_version", headers=apps.headers["member"])
    assert r.status_code == 400, r.text
    assert "invalid field for sorting" in r.json()["errors"][0]["detail"]


def _versions(apps: Apps, clusters: list[str]) -> dict[str, int]:
    c = m.Cluster.__table__
    with apps.other.engine.connect() as conn:
        return {
            u: int(v)
            for u, v in conn.execute(select(c.c.uuid, c.c.row_version).where(c.c.uuid.in_(clusters)))
        }


def test_a_nodegroup_write_changes_its_clusters_row_version(apps: Apps) -> None:
    _, clusters = _setup(apps)
    a, b, untouched = clusters
    writes = (
        ("UPDATE nodegroups SET node_count = 2 WHERE cluster_id = :a AND role = 'worker'", {a}),
        ("UPDATE nodegroups SET node_addresses = NULL WHERE cluster_id = :a", {a}),
        (
            "UPDATE nodegroups SET cluster_id = :b, name = 'moved' WHERE cluster_id = :a AND role = 'worker'",
            {a, b},
        ),
        ("DELETE FROM nodegroups WHERE name = 'moved'", {b}),
        (
            "INSERT INTO nodegroups (uuid, name, cluster_id, project_id, role, node_count, min_node_count, "
            "is_default, status, created_at) VALUES ('6f1c0c8e-2a53-4f0e-a2a9-8f3b4c5d6e7f', 'n', :a, 'p1', "
            "'worker', 1, 0, :f, 'CREATE_COMPLETE', CURRENT_TIMESTAMP)",
            {a},
        ),
    )
    for sql, changed in writes:
        before = _versions(apps, clusters)
        with apps.other.engine.begin() as conn:
            assert conn.execute(text(sql), {"a": a, "b": b, "f": False}).rowcount >= 1, sql
        after = _versions(apps, clusters)
        assert {u for u in clusters if after[u] != before[u]} == changed, sql
        assert untouched not in changed and 0 not in after.values()
    # Deleting a cluster deletes its nodegroups (ON DELETE CASCADE): the trigger finds no cluster.
    with apps.other.engine.begin() as conn:
        conn.execute(text("DELETE FROM clusters WHERE uuid = :a"), {"a": a})
        assert (
            conn.execute(text("SELECT count(*) FROM nodegroups WHERE cluster_id = :a"), {"a": a}).scalar()
            == 0
        )
    assert set(_versions(apps, clusters)) == {b, untouched}


def test_migration_0008_downgrades_and_upgrades(apps: Apps, db_url: str) -> None:
    """Downgraded, a nodegroup write leaves the cluster's version alone; upgraded again, it changes it."""
    _, clusters = _setup(apps)
    engine = create_engine(db_url, poolclass=NullPool)
    cfg = migrate.alembic_config()

    def resized(count: int) -> bool:
        before = _versions(apps, clusters[:1])
        with apps.other.engine.begin() as conn:
            conn.execute(
                text("UPDATE nodegroups SET node_count = :n WHERE cluster_id = :c AND role = 'worker'"),
                {"n": count, "c": clusters[0]},
            )
        return _versions(apps, clusters[:1]) != before

    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0007_row_versions")
        assert not resized(2)
    finally:
        migrate.upgrade(engine)
        engine.dispose()
    assert resized(3)
    _warm(apps)
