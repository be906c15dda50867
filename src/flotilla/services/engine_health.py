"""What ``/healthcheck`` says about the Docker Engine of the local provider."""

from __future__ import annotations

from flotilla.drivers.providers.local.engine import probe
from flotilla.settings import Settings


def engine_state(settings: Settings) -> dict[str, str]:
    """``{"state": up | down | not started | not used, "detail": ...}``; starts nothing."""
    if "local" not in settings.enabled_providers:
        return {"state": "not used", "detail": "the local provider is not enabled"}
    state, detail = probe(settings.local.docker_host, settings.data_dir)
    return {"state": state, "detail": detail}
