"""AmqpSink against a real RabbitMQ, received by a real oslo.messaging notification listener.

``scripts/setup-rabbitmq.sh`` installs and starts the broker (Debian's rabbitmq-server).
The URL is ``FLOTILLA_TEST_AMQP_URL`` (default ``rabbit://guest:guest@127.0.0.1:5672/``).
Without a reachable broker (or without oslo.messaging) the tests are skipped, or fail
when ``CI`` is set.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from flotilla.db import models as m
from flotilla.db.engine import Database
from flotilla.db.models import utcnow
from flotilla.db.outbox import OutboxNotification
from flotilla.idents import new_uuid
from flotilla.notify import dispatcher
from flotilla.services import bootstrap, notifications
from flotilla.settings import ConductorSettings, Settings

pytestmark = pytest.mark.amqp

AMQP_ENV = "FLOTILLA_TEST_AMQP_URL"
DEFAULT_URL = "rabbit://guest:guest@127.0.0.1:5672/"
WAIT_SECONDS = 15.0


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI is set but {reason} (run scripts/setup-rabbitmq.sh first)")
    pytest.skip(f"{reason}: run scripts/setup-rabbitmq.sh (or set {AMQP_ENV}) to run the AMQP tests")


@pytest.fixture(scope="module")
def oslo_messaging() -> Any:
    try:
        import oslo_messaging as om
    except ImportError:
        _unavailable("oslo.messaging is not installed")
    return om


@pytest.fixture(scope="module")
def amqp_url(oslo_messaging: Any) -> str:
    url = os.environ.get(AMQP_ENV, DEFAULT_URL)
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5672
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as exc:
        _unavailable(f"RabbitMQ is not reachable at {host}:{port} ({exc})")
    return url


@dataclass
class Received:
    messages: list[dict[str, Any]] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)
    expected: int = 1

    def record(self, priority: str, publisher_id: str, event_type: str, payload: Any, metadata: Any) -> None:
        self.messages.append(
            {"priority": priority, "publisher_id": publisher_id, "event_type": event_type, "payload": payload,
             "metadata": dict(metadata)}
        )  # fmt: skip
        if len(self.messages) >= self.expected:
            self.arrived.set()


@dataclass
class Listening:
    topic: str
    received: Received


@pytest.fixture
def listener(oslo_messaging: Any, amqp_url: str) -> Iterator[Listening]:
    """An oslo.messaging notification listener on a topic of its own (its queues are deleted after)."""
    from oslo_config import cfg

    om = oslo_messaging
    topic = f"flotilla-test-{uuid.uuid4().hex[:12]}"
    received = Received()

    class Endpoint:
        def info(self, ctxt: Any, publisher_id: str, event_type: str, payload: Any, metadata: Any) -> None:
            received.record("info", publisher_id, event_type, payload, metadata)

        def error(self, ctxt: Any, publisher_id: str, event_type: str, payload: Any, metadata: Any) -> None:
            received.record("error", publisher_id, event_type, payload, metadata)

    transport = om.get_notification_transport(cfg.ConfigOpts(), url=amqp_url)
    server = om.get_notification_listener(
        transport, [om.Target(topic=topic)], [Endpoint()], executor="threading"
    )
    server.start()
    try:
        yield Listening(topic=topic, received=received)
    finally:
        server.stop()
        server.wait()
        transport.cleanup()
        _delete_queues(amqp_url, [f"{topic}.info", f"{topic}.error"])


def _delete_queues(url: str, names: list[str]) -> None:
    import kombu

    parts = urlsplit(url)
    vhost = parts.path[1:] or "/"
    broker = f"amqp://{parts.username}:{parts.password}@{parts.hostname}:{parts.port or 5672}/{vhost}"
    connection: Any = kombu.Connection  # type: ignore[attr-defined]
    with connection(broker, connect_timeout=5) as conn:
        channel = conn.channel()
        for name in names:
            try:
                channel.queue_delete(name)
            except Exception:  # already gone: nothing to clean
                channel = conn.channel()


def _envelope(priority: str = "INFO") -> dict[str, Any]:
    return {
        "event_type": "magnum.cluster.create", "message_id": str(uuid.uuid4()),
        "payload": {"typeURI": "http://schemas.dmtf.org/cloud/audit/1.0/event", "outcome": "pending"},
        "priority": priority, "publisher_id": "container-infra.test", "timestamp": "2026-01-01 00:00:00.000000",
    }  # fmt: skip


def test_amqp_sink_delivers_to_an_oslo_messaging_listener(amqp_url: str, listener: Listening) -> None:
    from flotilla.notify.sinks import AmqpSink

    sink = AmqpSink(amqp_url, topic=listener.topic)
    info, error = _envelope("INFO"), _envelope("ERROR")
    listener.received.expected = 2
    try:
        sink.send(info)
        sink.send(error)
    finally:
        sink.close()
    assert listener.received.arrived.wait(WAIT_SECONDS), f"got only {listener.received.messages}"
    by_priority = {msg["priority"]: msg for msg in listener.received.messages}
    for priority, sent in (("info", info), ("error", error)):
        got = by_priority[priority]
        assert got["event_type"] == sent["event_type"]
        assert got["publisher_id"] == sent["publisher_id"]
        assert got["payload"] == sent["payload"]
        assert got["metadata"] == {"message_id": sent["message_id"], "timestamp": sent["timestamp"]}


def test_outbox_to_rabbitmq_through_the_dispatcher(
    tmp_path: Path, amqp_url: str, listener: Listening
) -> None:
    """emit() in a transaction, then the dispatcher: the listener gets the CADF event."""
    from flotilla.notify.sinks import AmqpSink

    settings = Settings(data_dir=tmp_path, conductor=ConductorSettings(enabled=False))
    db = Database(settings)
    bootstrap.prepare_database(db)
    uuid_ = new_uuid()
    with db.session() as s:
        template = m.ClusterTemplate(
            uuid=new_uuid(), name="t", project_id="p1", user_id="alice", coe="docker", image_id="img"
        )
        s.add(template)
        s.flush()
        cluster = m.Cluster(
            uuid=uuid_, name="web", project_id="p1", user_id="alice", cluster_template_id=template.uuid,
            status="CREATE_FAILED", status_reason="boom", created_via="bay", docker_volume_size=3,
        )  # fmt: skip
        s.add(cluster)
        s.flush()
        notifications.emit(
            s, cluster=cluster, action="create", outcome="failure", ctx_user_id="alice", ctx_project_id="p1"
        )
    listener.received.expected = 2
    sink = AmqpSink(amqp_url, topic=listener.topic)
    try:
        assert dispatcher.deliver_pending(db, [sink], clock=lambda: utcnow() + timedelta(seconds=1)) == 2
    finally:
        sink.close()
    assert listener.received.arrived.wait(WAIT_SECONDS), f"got only {listener.received.messages}"
    got = sorted(listener.received.messages, key=lambda msg: msg["event_type"])
    assert [msg["event_type"] for msg in got] == ["magnum.bay.created", "magnum.cluster.create"]
    assert {msg["priority"] for msg in got} == {"error"}
    with db.reader() as s:
        rows = list(s.scalars(select(OutboxNotification).order_by(OutboxNotification.id)))
    assert all(r.delivered_at is not None for r in rows)
    by_type = {r.event_type: r for r in rows}
    for msg in got:
        row = by_type[msg["event_type"]]
        assert msg["payload"] == row.payload
        assert msg["metadata"]["message_id"] == dispatcher.message_id(row)
        assert msg["publisher_id"] == notifications.publisher_id()
        assert msg["payload"]["target"]["attachments"][0]["content"]["docker_volume_size:"] == 3
    db.dispose()


def test_amqp_sink_raises_when_the_broker_is_unreachable(oslo_messaging: Any) -> None:
    """A send that cannot reach a broker fails (the dispatcher then retries), it is not swallowed."""
    from flotilla.notify.sinks import AmqpSink

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = AmqpSink(f"rabbit://guest:guest@127.0.0.1:{port}/", retry=0)
    try:
        with pytest.raises(Exception, match=r"[Cc]onnection refused"):
            sink.send(_envelope())
    finally:
        sink.close()
