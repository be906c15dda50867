"""One Settings object, built once at start-up and passed in (never a module global).

Values come from, in order of precedence: keyword arguments (the CLI's flags), the
environment (``FLOTILLA_*``; nested keys use ``__``, e.g. ``FLOTILLA_KEYSTONE__AUTH_URL``),
an optional YAML file (``FLOTILLA_CONFIG`` or ``DATA_DIR/flotilla.yaml``), then defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from flotilla.datadir import default_data_dir as default_data_dir  # re-exported: it lived here

AuthStrategy = Literal["token", "keystone", "noauth"]

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


class KeystoneSettings(BaseModel):
    """Where to validate ``X-Auth-Token`` when ``auth_strategy`` is ``keystone``."""

    auth_url: str = "http://127.0.0.1:5000/v3"
    username: str = "magnum"
    password: str = ""
    project_name: str = "service"
    user_domain_name: str = "Default"
    project_domain_name: str = "Default"
    www_authenticate_uri: str | None = None


class ConductorSettings(BaseModel):
    """Background worker knobs (seconds)."""

    enabled: bool = True
    workers: int = Field(default=2, ge=1, le=64)
    poll_interval: float = Field(default=0.2, gt=0)
    lease_seconds: float = Field(default=30.0, gt=0)
    sync_interval: float = Field(default=10.0, gt=0)
    #: Seconds between health checks (one provider listing + a native check per cluster).
    health_interval: float = Field(default=10.0, gt=0)
    #: A worker unhealthy this long is replaced when auto_healing_enabled=true.
    health_grace: float = Field(default=30.0, ge=0)
    #: Above this share of unhealthy nodes, auto-healing stops and says why.
    max_unhealthy_share: float = Field(default=0.5, gt=0, le=1)
    heartbeat_interval: float = Field(default=10.0, gt=0)
    #: Seconds between passes of the service controller (Kubernetes Services of type
    #: LoadBalancer get provider load balancers; one Service list per cluster per pass).
    service_lb_interval: float = Field(default=1.0, gt=0)
    #: The host name in ``/v1/mservices`` (Magnum's ``[DEFAULT] host``); default: the machine's.
    #: Conductors with the same host share one row, as in Magnum.
    host: str | None = Field(default=None, min_length=1, max_length=255)
    service_down_time: float = Field(default=60.0, gt=0)


class LocalProviderSettings(BaseModel):
    """The Docker Engine used as local infrastructure.

    ``docker_host`` selects an existing engine; when unset Flotilla starts and owns a
    dedicated ``dockerd`` under ``DATA_DIR/docker`` (needs root).
    """

    docker_host: str | None = None
    subnet_pool: str = "172.29.0.0/16"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLOTILLA_", env_nested_delimiter="__", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = None
    bind: str = "127.0.0.1:9511"
    public_url: str | None = None
    auth_strategy: AuthStrategy = "token"
    keystone: KeystoneSettings = Field(default_factory=KeystoneSettings)
    conductor: ConductorSettings = Field(default_factory=ConductorSettings)
    local: LocalProviderSettings = Field(default_factory=LocalProviderSettings)
    notifications: NotificationSettings = Field(default_factory=NotificationSettings)
    enabled_providers: list[str] = Field(default_factory=lambda: ["local", "fake"])
    default_provider: str = "local"
    enabled_coe_drivers: list[str] = Field(default_factory=lambda: ["docker", "swarm_mode", "kubernetes"])
    secret_key: str | None = None
    max_limit: int = Field(default=1000, ge=1)
    max_clusters_per_project: int = Field(default=20, ge=0)
    #: Masters + workers one cluster may have (a guard against typos like node_count=10000).
    max_nodes_per_cluster: int = Field(default=200, ge=1)
    #: Larger request bodies are refused with 413 before any route runs.
    max_request_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    #: Labels one template or cluster may carry, and the longest key and value (characters).
    max_labels: int = Field(default=100, ge=1)
    max_label_key_length: int = Field(default=255, ge=1)
    max_label_value_length: int = Field(default=8192, ge=1)
    #: The largest docker_volume_size (GB) a template or cluster may ask for, on any provider
    #: (the local provider also refuses more than its free space).
    max_docker_volume_size: int = Field(default=1024, ge=1)
    log_level: str = "INFO"
    #: Days a token made by ``token-create`` lives unless told otherwise (0: never expires).
    #: The bootstrap admin token in clouds.yaml does not expire; ``token-rotate-admin`` replaces it.
    token_ttl_days: float = Field(default=30.0, ge=0, le=36500)
    #: Add ``X-Flotilla-Sql-Statements`` (SQL statements the request ran) to every response;
    #: for ``bench/api.py`` and tests (``FLOTILLA_DEBUG_SQL_COUNT=1``), never on by default.
    debug_sql_count: bool = False
    #: API processes ``flotilla serve`` runs on its one port (next to one conductor).
    api_workers: int = Field(default=1, ge=1, le=64)
    #: PostgreSQL connections one Flotilla command may hold at once, all its processes
    #: together (``flotilla serve``: its API processes and its conductor; ``flotilla
    #: conductor``): each process's pools and API threads are sized from its share
    #: (``flotilla.db.budget``). Several commands on one database add up. Not used on SQLite.
    #: 80 of PostgreSQL's default 100 (3 of them for superusers), so psql, backups and
    #: monitoring still get in; with the default conductor that fits ``--api-workers`` up
    #: to 13 (at 4, each API process gets 16 connections).
    database_connections: int = Field(default=80, ge=1, le=100_000)
    #: Seconds each process may reuse a validated API token without looking it up again:
    #: a token revoked or expired in the database stops working everywhere within this
    #: time (at once in the process that revoked it). 0: look up every request.
    token_cache_seconds: float = Field(default=2.0, ge=0, le=3)

    @field_validator("bind")
    @classmethod
    def _check_bind(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"bind must be HOST:PORT, got {v!r}")
        return v

    @model_validator(mode="after")
    def _check_default_provider(self) -> Settings:
        if self.default_provider not in self.enabled_providers:
            raise ValueError(
                f"default_provider {self.default_provider} is not enabled (enabled_providers: "
                f"{', '.join(self.enabled_providers) or 'none'}); enable it or choose one of those"
            )
        return self

    @property
    def host(self) -> str:
        return self.bind.rpartition(":")[0]

    @property
    def port(self) -> int:
        return int(self.bind.rpartition(":")[2])

    @property
    def db_url(self) -> str:
        """The SQLAlchemy URL: the configured one, else SQLite under the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'flotilla.db'}"

    @property
    def endpoint(self) -> str:
        """The base URL clients use (no ``/v1``)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"


def load_settings(**overrides: Any) -> Settings:
    """Build the Settings once: YAML file < environment < explicit overrides.

    Raises ``ValueError`` (pydantic ``ValidationError``) on a bad value, naming the key.
    """
    clean = {k: v for k, v in overrides.items() if v is not None}
    data_dir = Path(clean.get("data_dir") or os.environ.get("FLOTILLA_DATA_DIR") or default_data_dir())
    cfg_path = os.environ.get("FLOTILLA_CONFIG") or str(data_dir / "flotilla.yaml")
    file_values: dict[str, Any] = {}
    if Path(cfg_path).is_file():
        loaded = yaml.safe_load(Path(cfg_path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{cfg_path}: expected a mapping at the top level")
        file_values = loaded
    env_only = Settings()
    merged: dict[str, Any] = {**file_values}
    # Environment beats the file: only keep env-set fields.
    for key in Settings.model_fields:
        env_key = f"FLOTILLA_{key.upper()}"
        if env_key in os.environ or any(k.startswith(env_key + "__") for k in os.environ):
            merged[key] = getattr(env_only, key)
    merged.update(clean)
    merged.setdefault("data_dir", data_dir)
    return Settings(**merged)
