"""CADF notifications: payload shape, the outbox, the sinks and the dispatcher (reference §12).

Runs on SQLite and PostgreSQL (the shared ``settings`` fixture). The webhook is a real
HTTP server on 127.0.0.1; nothing is mocked.
"""

from __future__ import annotations

import json
import logging
import socket
import stat
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pydantic
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select, update

from flotilla.db import migrate
from flotilla.db import models as m
from flotilla.db.engine import Database
from flotilla.db.models import Base, utcnow
from flotilla.db.outbox import OutboxNotification
from flotilla.idents import new_uuid
from flotilla.notify import dispatcher
from flotilla.notify.config import NotificationSettings, build_sinks
from flotilla.notify.sinks import ENVELOPE_KEYS, AmqpSink, JsonLinesSink, SinkError, WebhookSink, close_sinks
from flotilla.services import notifications
from flotilla.settings import Settings

CLUSTER_DATA_KEYS = {
    "status", "status_reason", "project_id", "created_at", "updated_at", "cluster_template_id", "keypair",
    "docker_volume_size:", "labels", "master_flavor_id", "flavor_id", "stack_id", "health_status",
    "create_timeout", "api_address", "discovery_url", "node_addresses", "master_addresses", "node_count",
    "master_count",
}  # fmt: skip


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database(settings)
    migrate.upgrade(database.engine)
    yield database
    database.dispose()


def make_cluster(db: Database, *, created_via: str = "cluster", workers: int = 3) -> m.Cluster:
    """A cluster row with its two default nodegroups (1 master, ``workers`` nodes)."""
    uuid = new_uuid()
    with db.session() as s:
        template = m.ClusterTemplate(
            uuid=new_uuid(), name="t", project_id="p1", user_id="alice", coe="docker", image_id="img"
        )
        s.add(template)
        s.flush()
        cluster = m.Cluster(
            uuid=uuid, name="web", project_id="p1", user_id="alice", cluster_template_id=template.uuid,
            keypair="kp", docker_volume_size=5, labels={"a": "b"}, master_flavor_id="m1.small",
            flavor_id="m1.small", status="CREATE_IN_PROGRESS", status_reason="waiting", stack_id=uuid,
            api_address="tcp://10.0.0.2:2376", node_addresses=["10.0.0.3"], master_addresses=["10.0.0.2"],
            created_via=created_via, create_timeout=60,
        )  # fmt: skip
        s.add(cluster)
        s.flush()
        for role, count in (("master", 1), ("worker", workers)):
            group = m.NodeGroup(
                uuid=new_uuid(), name=f"default-{role}", cluster_id=uuid, project_id="p1", role=role,
                node_count=count, is_default=True, status="CREATE_IN_PROGRESS",
            )  # fmt: skip
            s.add(group)
    return cluster


def emit(
    db: Database, cluster: m.Cluster, action: Any = "create", outcome: Any = "pending", **kw: Any
) -> None:
    with db.session() as s:
        row = s.scalars(select(m.Cluster).where(m.Cluster.uuid == cluster.uuid)).one()
        notifications.emit(
            s, cluster=row, action=action, outcome=outcome, ctx_user_id="alice", ctx_project_id="p1", **kw
        )


def rows(db: Database) -> list[OutboxNotification]:
    with db.reader() as s:
        return list(s.scalars(select(OutboxNotification).order_by(OutboxNotification.id)))


def test_cluster_event_payload_is_magnums_cadf_event(db: Database) -> None:
    cluster = make_cluster(db)
    emit(db, cluster)
    [row] = rows(db)
    assert row.event_type == "magnum.cluster.create"
    assert row.priority == "info"
    assert row.publisher_id == f"container-infra.{socket.gethostname()}"
    assert (row.attempts, row.delivered_at, row.last_error) == (0, None, None)
    assert row.next_attempt_at is not None
    p = row.payload
    assert p["typeURI"] == "http://schemas.dmtf.org/cloud/audit/1.0/event"
    assert (p["eventType"], p["action"], p["outcome"]) == ("activity", "create", "pending")
    assert p["id"] and datetime.fromisoformat(p["eventTime"]) <= utcnow()
    assert "reason" not in p
    initiator = p["initiator"]
    assert initiator["typeURI"] == "service/security/account/user"
    assert (initiator["user_id"], initiator["project_id"]) == ("alice", "p1")
    assert initiator["id"]
    target = p["target"]
    assert (target["typeURI"], target["id"], target["name"]) == (
        "service/magnum/cluster",
        cluster.uuid,
        "web",
    )
    [attachment] = target["attachments"]
    assert (attachment["name"], attachment["typeURI"]) == ("cluster_data", "service/magnum/cluster")
    data = attachment["content"]
    assert set(data) == CLUSTER_DATA_KEYS
    assert "docker_volume_size" not in data and data["docker_volume_size:"] == 5  # sic, as Magnum
    assert (data["node_count"], data["master_count"]) == (3, 1)
    assert (data["status"], data["project_id"], data["labels"]) == ("CREATE_IN_PROGRESS", "p1", {"a": "b"})
    assert datetime.fromisoformat(data["created_at"]).utcoffset() == timedelta(0)
    assert data["updated_at"] is None
    assert p["observer"]["typeURI"] == "service/magnum/cluster" and p["observer"]["id"]
    json.dumps(p)  # stored as JSON: everything is plain data


def test_failure_is_error_priority_and_carries_the_reason(db: Database) -> None:
    cluster = make_cluster(db)
    emit(db, cluster, "update", "failure", reason="node 2 did not join")
    [row] = rows(db)
    assert (row.event_type, row.priority) == ("magnum.cluster.update", "error")
    assert row.payload["outcome"] == "failure"
    assert row.payload["reason"] == {
        "reasonType": "flotilla/status_reason",
        "reasonCode": "node 2 did not join",
    }


@pytest.mark.parametrize(
    ("action", "bay_event"),
    [("create", "magnum.bay.created"), ("update", "magnum.bay.updated"), ("delete", "magnum.bay.deleted")],
)
def test_bays_also_get_the_guides_bay_event(db: Database, action: str, bay_event: str) -> None:
    cluster = make_cluster(db, created_via="bay")
    emit(db, cluster, action, "success")
    cluster_row, bay_row = rows(db)
    assert (cluster_row.event_type, bay_row.event_type) == (f"magnum.cluster.{action}", bay_event)
    assert (cluster_row.payload["target"]["typeURI"], bay_row.priority) == ("service/magnum/cluster", "info")
    p = bay_row.payload
    assert (p["action"], p["outcome"]) == (action, "success")
    assert (p["target"]["typeURI"], p["target"]["id"]) == ("service/magnum/bay", cluster.uuid)
    assert p["observer"]["typeURI"] == "service/magnum/bay"
    assert "docker_volume_size:" in p["target"]["attachments"][0]["content"]
    assert p["id"] != cluster_row.payload["id"]


def test_unknown_action_or_outcome_is_refused(db: Database) -> None:
    cluster = make_cluster(db)
    with pytest.raises(ValueError, match="unknown notification action 'resize'"):
        emit(db, cluster, "resize", "pending")
    with pytest.raises(ValueError, match="unknown notification outcome 'done'"):
        emit(db, cluster, "create", "done")
    assert rows(db) == []


def test_outbox_row_is_written_in_the_callers_transaction(db: Database) -> None:
    cluster = make_cluster(db)
    with db.session() as s:
        row = s.scalars(select(m.Cluster).where(m.Cluster.uuid == cluster.uuid)).one()
        row.status = "CREATE_COMPLETE"
        notifications.emit(
            s, cluster=row, action="create", outcome="success", ctx_user_id=None, ctx_project_id=None
        )
        s.flush()
        assert s.scalar(select(func.count(OutboxNotification.id))) == 1  # same transaction sees it
        assert rows(db) == []  # another connection does not, until the commit
    [stored] = rows(db)
    assert stored.payload["target"]["attachments"][0]["content"]["status"] == "CREATE_COMPLETE"
    assert set(stored.payload["initiator"]) == {"typeURI", "id"}  # no caller: no user/project


def test_no_outbox_row_when_the_transaction_rolls_back(db: Database) -> None:
    cluster = make_cluster(db)
    with pytest.raises(RuntimeError, match="the change failed"), db.session() as s:
        row = s.scalars(select(m.Cluster).where(m.Cluster.uuid == cluster.uuid)).one()
        notifications.emit(
            s, cluster=row, action="delete", outcome="pending", ctx_user_id="alice", ctx_project_id="p1"
        )
        s.flush()
        raise RuntimeError("the change failed")
    assert rows(db) == []


def test_the_migration_matches_the_model(db: Database) -> None:
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert [d for d in diff if "notifications_outbox" in repr(d)] == []


def envelope(n: int = 1) -> dict[str, Any]:
    return {
        "event_type": "magnum.cluster.create", "message_id": f"00000000-0000-0000-0000-00000000000{n}",
        "payload": {"id": str(n), "outcome": "pending", "text": "héllo"}, "priority": "INFO",
        "publisher_id": "container-infra.test", "timestamp": "2026-01-01 00:00:00.000000",
    }  # fmt: skip


def test_jsonl_sink_appends_parseable_lines(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "notifications.jsonl"
    sink = JsonLinesSink(path)
    sink.send(envelope(1))
    sink.send({**envelope(2), "extra": "dropped"})
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [envelope(1), envelope(2)]
    assert list(json.loads(lines[0])) == list(ENVELOPE_KEYS)
    assert stat.S_IMODE(path.stat().st_mode) & 0o007 == 0  # not world-readable


class Hook:
    """A real HTTP server on 127.0.0.1 that answers the queued statuses (then 200)."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                hook.bodies.append(json.loads(self.rfile.read(length)))
                status = hook.statuses.pop(0) if hook.statuses else 200
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"broken" if status >= 300 else b"ok")

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:  # idempotent
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    server = Hook()
    yield server
    server.close()


def test_webhook_sink_posts_json_and_raises_on_non_2xx(hook: Hook) -> None:
    sink = WebhookSink(hook.url, timeout=5)
    try:
        sink.send(envelope(1))
        hook.statuses.append(503)
        with pytest.raises(SinkError, match="answered 503: broken"):
            sink.send(envelope(2))
    finally:
        sink.close()
    assert hook.bodies == [envelope(1), envelope(2)]
    hook.close()  # nothing listens any more: the connection error escapes too
    with pytest.raises(Exception, match=r"[Cc]onnect"):
        WebhookSink(hook.url, timeout=2).send(envelope(3))


def test_webhook_delivery_is_retried_after_a_500(db: Database, hook: Hook) -> None:
    cluster = make_cluster(db)
    emit(db, cluster)
    hook.statuses.append(500)
    sink = WebhookSink(hook.url, timeout=5)
    t0 = utcnow() + timedelta(seconds=1)
    try:
        assert dispatcher.deliver_pending(db, [sink], clock=lambda: t0) == 0
        [row] = rows(db)
        assert row.attempts == 1 and row.delivered_at is None
        assert row.last_error is not None and "answered 500" in row.last_error
        assert row.next_attempt_at == t0 + timedelta(seconds=1)
        # Not due yet: nothing is sent.
        assert dispatcher.deliver_pending(db, [sink], clock=lambda: t0 + timedelta(seconds=0.5)) == 0
        assert len(hook.bodies) == 1
        assert dispatcher.deliver_pending(db, [sink], clock=lambda: t0 + timedelta(seconds=1)) == 1
    finally:
        sink.close()
    [row] = rows(db)
    assert (row.attempts, row.next_attempt_at, row.last_error) == (2, None, None)
    assert row.delivered_at is not None
    first, second = hook.bodies
    assert first == second  # the same message, the same message_id
    assert first["event_type"] == "magnum.cluster.create" and first["priority"] == "INFO"
    assert first["payload"] == row.payload
    assert first["publisher_id"] == row.publisher_id
    assert datetime.strptime(first["timestamp"], "%Y-%m-%d %H:%M:%S.%f")
    assert dispatcher.deliver_pending(db, [sink], clock=lambda: t0 + timedelta(hours=1)) == 0


def fixed(at: datetime) -> Callable[[], datetime]:
    return lambda: at


def test_backoff_then_give_up(db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    emit(db, make_cluster(db))
    sink = JsonLinesSink(tmp_path)  # a directory: every send fails
    now = utcnow() + timedelta(seconds=1)
    delays: list[float] = []
    with caplog.at_level(logging.WARNING, logger="flotilla.notify.dispatcher"):
        for _ in range(12):
            assert dispatcher.deliver_pending(db, [sink], max_attempts=12, clock=fixed(now)) == 0
            [row] = rows(db)
            if row.next_attempt_at is None:
                break
            delays.append((row.next_attempt_at - now).total_seconds())
            now = row.next_attempt_at
    assert delays == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    [row] = rows(db)
    assert (row.attempts, row.delivered_at, row.next_attempt_at) == (12, None, None)
    assert row.last_error is not None and "IsADirectoryError" in row.last_error
    assert "given up after 12 attempts" in caplog.text
    with db.reader() as s:
        assert dispatcher.pending_count(s) == 0
    assert dispatcher.deliver_pending(db, [sink], clock=lambda: now + timedelta(days=1)) == 0
    assert [r.attempts for r in rows(db)] == [12]  # given up: never tried again


def test_every_sink_gets_each_message_and_a_failing_row_does_not_block_others(
    db: Database, tmp_path: Path, hook: Hook
) -> None:
    cluster = make_cluster(db, created_via="bay")
    emit(db, cluster, "create", "pending")  # two rows: cluster + bay event
    hook.statuses.append(500)  # the first row fails at the webhook
    jsonl = JsonLinesSink(tmp_path / "n.jsonl")
    sink = WebhookSink(hook.url, timeout=5)
    try:
        later = utcnow() + timedelta(seconds=1)
        assert dispatcher.deliver_pending(db, [jsonl, sink], clock=lambda: later) == 1
    finally:
        sink.close()
    first, second = rows(db)
    assert first.delivered_at is None and first.attempts == 1
    assert second.delivered_at is not None
    written = [json.loads(line) for line in (tmp_path / "n.jsonl").read_text().splitlines()]
    assert [w["event_type"] for w in written] == ["magnum.cluster.create", "magnum.bay.created"]
    assert written[1] == hook.bodies[1]


def test_a_claimed_row_is_not_sent_twice_and_purge_keeps_undelivered(db: Database, tmp_path: Path) -> None:
    emit(db, make_cluster(db))
    emit(db, make_cluster(db))
    _first, second = rows(db)
    lease = utcnow() + timedelta(minutes=5)
    with db.session() as s:  # another dispatcher holds a claim on the second row
        s.execute(
            update(OutboxNotification).where(OutboxNotification.id == second.id).values(next_attempt_at=lease)
        )
    sink = JsonLinesSink(tmp_path / "n.jsonl")
    assert dispatcher.deliver_pending(db, [sink], clock=lambda: utcnow() + timedelta(seconds=1)) == 1
    assert len((tmp_path / "n.jsonl").read_text().splitlines()) == 1
    assert dispatcher.purge_delivered(db, timedelta(hours=1)) == 0
    assert (
        dispatcher.purge_delivered(db, timedelta(hours=1), clock=lambda: utcnow() + timedelta(hours=2)) == 1
    )
    assert [r.id for r in rows(db)] == [second.id]


def test_settings_default_to_jsonl_and_name_a_missing_url(tmp_path: Path) -> None:
    [sink] = build_sinks(NotificationSettings(), tmp_path)
    assert isinstance(sink, JsonLinesSink) and sink.path == tmp_path / "notifications.jsonl"
    with pytest.raises(pydantic.ValidationError, match="webhook_url is not set"):
        NotificationSettings(sinks=["webhook"])
    with pytest.raises(pydantic.ValidationError, match="amqp_url is not set"):
        NotificationSettings(sinks=["amqp"])
    with pytest.raises(pydantic.ValidationError):
        NotificationSettings.model_validate({"sinks": ["carrier-pigeon"]})


def test_build_sinks_in_order(tmp_path: Path, hook: Hook) -> None:
    pytest.importorskip("oslo_messaging")
    cfg = NotificationSettings(
        sinks=["webhook", "jsonl", "amqp"], webhook_url=hook.url, jsonl_path=str(tmp_path / "x.jsonl"),
        amqp_url="rabbit://guest:secret@127.0.0.1:5672/",
    )  # fmt: skip
    sinks = build_sinks(cfg, tmp_path)
    try:
        assert [type(s) for s in sinks] == [WebhookSink, JsonLinesSink, AmqpSink]
        assert "secret" not in repr(sinks[2])
    finally:
        close_sinks(sinks)
