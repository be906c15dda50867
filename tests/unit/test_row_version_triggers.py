"""The triggers behind ``row_version`` exist after every migration, and each write path bumps it.

Lists and shows are answered from rendered JSON keyed by ``row_version`` (README "Lists
keyed by row version"): the database changes it on every insert and update of a template
or cluster (migration 0007) and on every insert, update and delete of a nodegroup for its
cluster (0008). Nothing in the application sets it, so a missing trigger makes lists and
shows stale without any error. On SQLite a later migration that rebuilds one of these
tables (Alembic's ``batch_alter_table``, "move and copy") drops that table's triggers
silently; this test runs on the database as the whole migration chain leaves it (SQLite and
PostgreSQL) and fails until such a migration creates them again (see the note in
``flotilla/migrations/__init__.py``). The last test shows it does: it rebuilds ``nodegroups`` the
way a batch migration would and expects the guard to name the triggers that went with it.
"""

from __future__ import annotations

import uuid as uuids
from collections.abc import Iterator
from typing import Any

import pytest
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import Connection, Engine, create_engine, delete, select, text, update
from sqlalchemy.pool import NullPool

from flotilla.db import models as m

#: The triggers the row_version scheme needs, by dialect: name -> the table it is on.
#: A migration that changes these changes this contract (and says so here).
REQUIRED = {
    "sqlite": {
        "cluster_templates_row_version_insert": "cluster_templates",
        "cluster_templates_row_version_update": "cluster_templates",
        "clusters_row_version_insert": "clusters",
        "clusters_row_version_update": "clusters",
        "nodegroups_cluster_version_insert": "nodegroups",
        "nodegroups_cluster_version_update": "nodegroups",
        "nodegroups_cluster_version_delete": "nodegroups",
    },
    "postgresql": {
        "cluster_templates_row_version": "cluster_templates",
        "clusters_row_version": "clusters",
        "nodegroups_cluster_version": "nodegroups",
    },
}


def triggers(conn: Connection) -> dict[str, str]:
    """The enabled triggers of the database: name -> table."""
    if conn.dialect.name == "sqlite":
        rows = conn.execute(text("SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger'"))
    else:  # 'D': disabled (ALTER TABLE ... DISABLE TRIGGER)
        rows = conn.execute(
            text(
                "SELECT t.tgname, c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE NOT t.tgisinternal AND t.tgenabled <> 'D' AND n.nspname = current_schema()"
            )
        )
    return {str(name): str(table) for name, table in rows}


def missing(conn: Connection) -> dict[str, str]:
    """The required triggers that are absent (or on another table)."""
    found = triggers(conn)
    return {name: table for name, table in REQUIRED[conn.dialect.name].items() if found.get(name) != table}


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """The migrated database (``db_url``: the whole chain run on a fresh database)."""
    eng = create_engine(db_url, poolclass=NullPool)
    yield eng
    eng.dispose()


def test_every_row_version_trigger_exists_after_all_migrations(engine: Engine) -> None:
    with engine.connect() as conn:
        assert missing(conn) == {}, (
            "row_version triggers missing after the migrations (a table rebuilt by a batch "
            "migration loses its triggers on SQLite: create them again in that migration; "
            "see flotilla/migrations/__init__.py)"
        )


def _insert(conn: Connection, table: Any, **values: Any) -> str:
    uuid = str(uuids.uuid4())
    conn.execute(table.insert().values(uuid=uuid, project_id="p", **values))
    return uuid


def test_every_write_path_changes_row_version(engine: Engine) -> None:
    """Insert and update of a template and a cluster; insert, update (also moving it to
    another cluster) and delete of a nodegroup, for its cluster(s). Plain Core statements:
    whatever writes, the database does it."""
    t, c, g = m.ClusterTemplate.__table__, m.Cluster.__table__, m.NodeGroup.__table__

    def version(table: Any, uuid: str) -> int:
        with engine.connect() as conn:
            return int(conn.execute(select(table.c.row_version).where(table.c.uuid == uuid)).scalar_one())

    seen: list[int] = []

    def changed(table: Any, uuid: str) -> bool:
        now = version(table, uuid)
        new = now != 0 and now not in seen
        seen.append(now)
        return new

    with engine.begin() as conn:
        template = _insert(conn, t, user_id="u", coe="swarm", image_id="i", name="t")
    assert changed(t, template), "insert into cluster_templates"
    with engine.begin() as conn:
        conn.execute(update(t).where(t.c.uuid == template).values(name="renamed"))
    assert changed(t, template), "update of cluster_templates"

    with engine.begin() as conn:
        a = _insert(conn, c, user_id="u", cluster_template_id=template, status="CREATE_IN_PROGRESS", name="a")
        b = _insert(conn, c, user_id="u", cluster_template_id=template, status="CREATE_IN_PROGRESS", name="b")
    assert changed(c, a) and changed(c, b), "insert into clusters"
    with engine.begin() as conn:
        conn.execute(update(c).where(c.c.uuid == a).values(status="CREATE_COMPLETE"))
    assert changed(c, a), "update of clusters"

    with engine.begin() as conn:
        group = _insert(
            conn, g, name="w", cluster_id=a, role="worker", node_count=1, status="CREATE_COMPLETE"
        )
    assert changed(c, a), "insert into nodegroups: its cluster"
    with engine.begin() as conn:
        conn.execute(update(g).where(g.c.uuid == group).values(node_count=3))
    assert changed(c, a), "update of nodegroups: its cluster"
    with engine.begin() as conn:
        conn.execute(update(g).where(g.c.uuid == group).values(cluster_id=b))
    assert changed(c, a) and changed(c, b), "a nodegroup moved: both clusters"
    with engine.begin() as conn:
        conn.execute(delete(g).where(g.c.uuid == group))
    assert changed(c, b), "delete from nodegroups: its cluster"


def test_a_batch_rebuild_drops_triggers_on_sqlite_and_the_guard_sees_it(engine: Engine) -> None:
    """What the guard is for: Alembic's batch mode on SQLite copies the table into a new one
    and drops the old, and the old one's triggers go with it. (PostgreSQL alters in place.)"""
    with engine.begin() as conn:
        ops = Operations(MigrationContext.configure(conn))
        with ops.batch_alter_table("nodegroups", recreate="auto") as batch:
            batch.alter_column("name", existing_type=m.NodeGroup.__table__.c.name.type, nullable=True)
        gone = missing(conn)
    if engine.dialect.name == "sqlite":
        assert gone == {k: v for k, v in REQUIRED["sqlite"].items() if v == "nodegroups"}
    else:
        assert gone == {}
