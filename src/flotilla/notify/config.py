"""The sinks ``Settings.notifications`` names (the settings model lives in ``flotilla.settings``).

In ``flotilla.yaml``::

    notifications:
      sinks: [jsonl, webhook, amqp]
      webhook_url: http://127.0.0.1:8080/hook
      amqp_url: rabbit://guest:guest@127.0.0.1:5672/

or ``FLOTILLA_NOTIFICATIONS__SINKS='["jsonl","amqp"]'``, ``FLOTILLA_NOTIFICATIONS__AMQP_URL=...``.
"""

from __future__ import annotations

from pathlib import Path

from flotilla.notify.sinks import AmqpSink, JsonLinesSink, Sink, WebhookSink
from flotilla.settings import NotificationSettings, SinkName

__all__ = ["NotificationSettings", "SinkName", "build_sinks"]


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
