"""Workers report through services: step outputs, health, and nodegroup statuses that
follow the lifecycle table (real database: the shared ``settings`` fixture)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from flotilla.db import migrate
from flotilla.db import models as m
from flotilla.db.engine import Database
from flotilla.errors import InvalidTransition
from flotilla.idents import new_uuid
from flotilla.lifecycle import Event, Status
from flotilla.services import cluster_reports, operations
from flotilla.settings import Settings

SETTLED = (Status.CREATE_COMPLETE.value, Status.UPDATE_COMPLETE.value)


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database(settings)
    migrate.upgrade(database.engine)
    yield database
    database.dispose()


def _cluster(db: Database, status: Status = Status.CREATE_COMPLETE) -> str:
    uuid = new_uuid()
    with db.session() as s:
        template = m.ClusterTemplate(
            uuid=new_uuid(), name="t", project_id="p1", user_id="u", coe="docker", image_id="img"
        )
        s.add(template)
        s.flush()
        s.add(
            m.Cluster(
                uuid=uuid, name="c", project_id="p1", user_id="u", cluster_template_id=template.uuid,
                status=status.value, stack_id=uuid, created_via="cluster", create_timeout=60,
                node_addresses=["10.0.0.9"],
            )
        )  # fmt: skip
        s.flush()
        for role, name in (("master", "default-master"), ("worker", "default-worker"), ("worker", "extra")):
            s.add(
                m.NodeGroup(
                    uuid=new_uuid(), name=name, cluster_id=uuid, project_id="p1", role=role, node_count=1,
                    is_default=name.startswith("default"), status=status.value, node_addresses=[],
                )
            )  # fmt: skip
    return uuid


def _groups(db: Database, uuid: str) -> dict[str, m.NodeGroup]:
    with db.reader() as s:
        return {g.name: g for g in s.scalars(select(m.NodeGroup).where(m.NodeGroup.cluster_id == uuid))}


def _row(db: Database, uuid: str) -> m.Cluster:
    with db.reader() as s:
        return s.scalars(select(m.Cluster).where(m.Cluster.uuid == uuid)).one()


def test_outputs_go_to_the_cluster_and_its_default_groups(db: Database) -> None:
    uuid = _cluster(db)
    with db.session() as s:
        cluster_reports.record_outputs(
            s,
            uuid,
            cluster_reports.Outputs(api_address="tcp://10.0.0.5:2376", master_addresses=["10.0.0.10"]),
        )
    row = _row(db, uuid)
    assert (row.api_address, row.master_addresses, row.node_addresses) == (
        "tcp://10.0.0.5:2376", ["10.0.0.10"], ["10.0.0.9"],  # not reported: kept
    )  # fmt: skip
    groups = _groups(db, uuid)
    assert groups["default-master"].node_addresses == ["10.0.0.10"]
    assert groups["default-worker"].node_addresses == []
    with db.session() as s:
        cluster_reports.record_outputs(s, uuid, cluster_reports.Outputs(node_addresses=["10.0.0.11"]))
    assert _groups(db, uuid)["default-worker"].node_addresses == ["10.0.0.11"]
    assert _groups(db, uuid)["extra"].node_addresses == []


def test_health_is_recorded_only_for_observed_statuses(db: Database) -> None:
    uuid = _cluster(db)
    with db.session() as s:
        assert cluster_reports.record_health(s, uuid, "UNHEALTHY", {"n-0": "stopped"}, statuses=SETTLED)
    with db.session() as s:  # the same observation again: nothing changes
        assert not cluster_reports.record_health(s, uuid, "UNHEALTHY", {"n-0": "stopped"}, statuses=SETTLED)
    row = _row(db, uuid)
    assert (row.health_status, row.health_status_reason) == ("UNHEALTHY", {"n-0": "stopped"})
    with db.session() as s:
        cluster_reports.note_health(s, uuid, {"n-0": "stopped", "auto_healing": "paused"})
    assert _row(db, uuid).health_status_reason == {"n-0": "stopped", "auto_healing": "paused"}
    busy = _cluster(db, Status.UPDATE_IN_PROGRESS)
    with db.session() as s:
        assert not cluster_reports.record_health(s, busy, "HEALTHY", {}, statuses=SETTLED)
    assert _row(db, busy).health_status is None
    with pytest.raises(ValueError, match="FINE"), db.session() as s:
        cluster_reports.record_health(s, uuid, "FINE", {}, statuses=SETTLED)


@pytest.mark.parametrize(("failed", "status"), [(None, "UPDATE_COMPLETE"), ("boom", "UPDATE_FAILED")])
def test_an_operation_end_moves_only_its_groups(db: Database, failed: str | None, status: str) -> None:
    uuid = _cluster(db)
    with db.session() as s:
        cluster = s.scalars(select(m.Cluster).where(m.Cluster.uuid == uuid)).one()
        operations.transition(s, cluster, Event.UPDATE_REQUESTED, None)
        worker = next(g for g in s.scalars(select(m.NodeGroup)) if g.name == "default-worker")
        assert operations.transition_group(worker, Event.UPDATE_REQUESTED) == Status.UPDATE_IN_PROGRESS
        operations.enqueue(s, cluster, "update")
    with db.session() as s:
        op = operations.claim(s, "me", 30, skip_locked=False)
        assert op is not None
        operations.finish(s, op, "me", failed_reason=failed)
    groups = _groups(db, uuid)
    assert (groups["default-worker"].status, groups["default-worker"].status_reason) == (status, failed)
    assert groups["default-master"].status == groups["extra"].status == "CREATE_COMPLETE"
    assert _row(db, uuid).status == status


def test_a_group_refuses_an_edge_the_table_lacks(db: Database) -> None:
    uuid = _cluster(db, Status.DELETE_IN_PROGRESS)
    with db.session() as s:
        group = s.scalars(select(m.NodeGroup).where(m.NodeGroup.cluster_id == uuid)).first()
        assert group is not None
        with pytest.raises(InvalidTransition, match="DELETE_IN_PROGRESS"):
            operations.transition_group(group, Event.UPDATE_REQUESTED)
