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
from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from flotilla.notify.config import NotificationSettings

AuthStrategy = Literal["token", "keystone", "noauth"]


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "flotilla"


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
    log_level: str = "INFO"

    @field_validator("bind")
    @classmethod
    def _check_bind(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"bind must be HOST:PORT, got {v!r}")
        return v

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
