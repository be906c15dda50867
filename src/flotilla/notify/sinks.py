"""Where notifications go: a JSON-lines file, an HTTP webhook, an AMQP broker.

A sink receives the oslo.messaging ``messagingv2`` envelope as a dict (``event_type``,
``message_id``, ``payload``, ``priority``, ``publisher_id``, ``timestamp``) and
raises on failure; the dispatcher then retries later. Delivery is at least once:
consumers de-duplicate on ``message_id``, which stays the same across retries.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from pathlib import Path
from typing import Any, Protocol

import httpx

ENVELOPE_KEYS = ("event_type", "message_id", "payload", "priority", "publisher_id", "timestamp")


class SinkError(Exception):
    """A sink could not take the message (the dispatcher records it and retries)."""


class Sink(Protocol):
    def send(self, message: dict[str, Any]) -> None:
        """Deliver one envelope; raise on failure (any exception counts)."""


def close_sinks(sinks: list[Sink]) -> None:
    """Release what the sinks hold (HTTP connections, broker connections)."""
    for sink in sinks:
        close = getattr(sink, "close", None)
        if callable(close):
            close()


class JsonLinesSink:
    """Appends one JSON object per line and fsyncs before returning.

    Safe for several processes on one file (``flock`` around each line). The file is
    opened per message, so rotating it (rename + new file) needs no signal.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        line = json.dumps({k: message.get(k) for k in ENVELOPE_KEYS}, ensure_ascii=False) + "\n"
        data = line.encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)  # also drops the flock

    def __repr__(self) -> str:
        return f"JsonLinesSink({str(self.path)!r})"


class WebhookSink:
    """POSTs the envelope as JSON; any answer but 2xx (or no answer in ``timeout`` s) fails."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url
        self._client = httpx.Client(timeout=timeout, headers={"User-Agent": "flotilla-notifications"})

    def send(self, message: dict[str, Any]) -> None:
        response = self._client.post(self.url, json=message)
        if not 200 <= response.status_code < 300:
            raise SinkError(f"webhook {self.url} answered {response.status_code}: {response.text[:200]}")

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"WebhookSink({self.url!r})"


class AmqpSink:
    """Publishes to an AMQP broker exactly as an oslo.messaging ``messagingv2`` Notifier.

    The message goes to ``<topic>.<priority>`` (e.g. ``notifications.info``) on the
    transport's control exchange, so Ceilometer-style listeners receive it unchanged.

    It calls the notification transport itself (what the messagingv2 driver does)
    rather than ``Notifier.info``: the Notifier and its driver log send errors and
    swallow them, and the outbox must know a send failed to retry it. ``retry`` is
    oslo.messaging's: reconnection attempts within one send (0 = none).
    """

    def __init__(self, transport_url: str, topic: str = "notifications", *, retry: int = 1) -> None:
        try:
            import oslo_messaging
            from oslo_config import cfg
        except ImportError as exc:
            raise RuntimeError(
                "the 'amqp' notification sink needs oslo.messaging: pip install oslo.messaging "
                "(or leave 'amqp' out of notifications.sinks)"
            ) from exc
        self._om = oslo_messaging
        self.topic = topic
        self.retry = retry
        self._url = transport_url
        # A private ConfigOpts: the transport's options never touch a global config.
        self._transport = oslo_messaging.get_notification_transport(cfg.ConfigOpts(), url=transport_url)

    def send(self, message: dict[str, Any]) -> None:
        priority = str(message.get("priority") or "info").lower()
        target = self._om.Target(topic=f"{self.topic}.{priority}")
        self._transport._send_notification(target, {}, message, version=2.0, retry=self.retry)

    def close(self) -> None:
        self._transport.cleanup()

    def __repr__(self) -> str:
        safe = self._url.split("@", 1)[-1] if "@" in self._url else self._url
        return f"AmqpSink({safe!r}, topic={self.topic!r})"
