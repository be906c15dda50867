"""Notification settings (``Settings.notifications``) and the sinks they name.

In ``flotilla.yaml``::

    notifications:
      sinks: [jsonl, webhook, amqp]
      webhook_url: http://127.0.0.1:8080/hook
      amqp_url: rabbit://guest:guest@127.0.0.1:5672/

or ``FLOTILLA_NOTIFICATIONS__SINKS='["jsonl","amqp"]'``, ``FLOTILLA_NOTIFICATIONS__AMQP_URL=...``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from flotilla.notify.sinks import AmqpSink, JsonLinesSink, Sink, WebhookSink

SinkName = Literal["jsonl", "webhook", "amqp"]


def _default_sinks() -> list[SinkName]:
    return ["jsonl"]


class NotificationSettings(BaseModel):
    """Which sinks get the CADF notifications, and how the dispatcher retries."""

    #: Any of ``jsonl``, ``webhook``, ``amqp``; empty = nothing is sent, rows wait in the outbox.
    sinks: list[SinkName] = Field(default_factory=_default_sinks)
    #: Default ``DATA_DIR/notifications.jsonl``.
    jsonl_path: str | None = None
    webhook_url: str | None = None
    webhook_timeout: float = Field(default=10.0, gt=0)
    #: An oslo.messaging transport URL, e.g. ``rabbit://user:pass@host:5672/``.
    amqp_url: str | None = None
    amqp_topic: str = "notifications"
    #: Seconds between outbox scans when there is nothing to send.
    poll_interval: float = Field(default=1.0, gt=0)
    #: Attempts before a notification is given up (logged, kept with its last error).
    max_attempts: int = Field(default=20, ge=1)
    #: Delivered rows older than this many hours are deleted from the outbox.
    keep_delivered_hours: float = Field(default=168.0, gt=0)

    @model_validator(mode="after")
    def _check_urls(self) -> NotificationSettings:
        if "webhook" in self.sinks and not self.webhook_url:
            raise ValueError("notifications.sinks has 'webhook' but notifications.webhook_url is not set")
        if "amqp" in self.sinks and not self.amqp_url:
            raise ValueError("notifications.sinks has 'amqp' but notifications.amqp_url is not set")
        return self


def build_sinks(cfg: NotificationSettings, data_dir: Path) -> list[Sink]:
    """The configured sinks, in order. Raises RuntimeError when ``amqp`` lacks oslo.messaging."""
    out: list[Sink] = []
    for name in dict.fromkeys(cfg.sinks):  # each once, order kept
        if name == "jsonl":
            out.append(JsonLinesSink(cfg.jsonl_path or data_dir / "notifications.jsonl"))
        elif name == "webhook":
            assert cfg.webhook_url is not None  # checked by the validator
            out.append(WebhookSink(cfg.webhook_url, cfg.webhook_timeout))
        else:
            assert cfg.amqp_url is not None
            out.append(AmqpSink(cfg.amqp_url, cfg.amqp_topic))
    return out
