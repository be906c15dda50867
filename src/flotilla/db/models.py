"""SQLAlchemy 2 tables. One Alembic chain creates them (``flotilla/migrations``).

Adding a field: a column here, a migration, the API field table, a test.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


def row_version_column() -> Mapped[int]:
    """A value the database changes on every insert and update of the row (triggers of
    migration 0007; whoever writes, by any path): with the uuid, the key a rendered list row
    is kept under (:mod:`flotilla.api.render_cache`). Not an API field, not sortable
    (``info["internal"]``); never written by the application."""
    return mapped_column(BigInteger, server_default=text("0"), info={"internal": True})


def internal(column: Any) -> bool:
    """A bookkeeping column that is no field of the resource (``row_version``)."""
    return bool(column.info.get("internal"))


class Timestamps:
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)


class ApiToken(Base, Timestamps):
    """A bearer token for ``auth_strategy=token``; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    user_id: Mapped[str] = mapped_column(String(255))
    project_id: Mapped[str] = mapped_column(String(255))
    roles: Mapped[str] = mapped_column(String(255))  # comma list
    description: Mapped[str | None] = mapped_column(String(255), default=None)
    #: None: never expires (the bootstrap admin token; rotate it with ``token-rotate-admin``).
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)


class WebSession(Base, Timestamps):
    """A signed-in dashboard session; sign-out deletes the row, which ends the session
    even for a copy of its cookie. Only the SHA-256 of the session id is stored."""

    __tablename__ = "web_sessions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sid_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ClusterTemplate(Base, Timestamps):
    __tablename__ = "cluster_templates"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True, index=True)
    name: Mapped[str | None] = mapped_column(String(255), index=True)
    project_id: Mapped[str] = mapped_column(String(255), index=True)
    user_id: Mapped[str] = mapped_column(String(255))
    coe: Mapped[str] = mapped_column(String(255))
    image_id: Mapped[str] = mapped_column(String(255))
    keypair_id: Mapped[str | None] = mapped_column(String(255))
    flavor_id: Mapped[str | None] = mapped_column(String(255))
    master_flavor_id: Mapped[str | None] = mapped_column(String(255))
    dns_nameserver: Mapped[str | None] = mapped_column(String(255))
    external_network_id: Mapped[str | None] = mapped_column(String(255))
    fixed_network: Mapped[str | None] = mapped_column(String(255))
    fixed_subnet: Mapped[str | None] = mapped_column(String(255))
    network_driver: Mapped[str | None] = mapped_column(String(255))
    volume_driver: Mapped[str | None] = mapped_column(String(255))
    apiserver_port: Mapped[int | None] = mapped_column(Integer)
    docker_volume_size: Mapped[int | None] = mapped_column(Integer)
    docker_storage_driver: Mapped[str | None] = mapped_column(String(255))
    cluster_distro: Mapped[str | None] = mapped_column(String(255))
    http_proxy: Mapped[str | None] = mapped_column(String(255))
    https_proxy: Mapped[str | None] = mapped_column(String(255))
    no_proxy: Mapped[str | None] = mapped_column(String(255))
    registry_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    insecure_registry: Mapped[str | None] = mapped_column(String(255))
    labels: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    tls_disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    hidden: Mapped[bool] = mapped_column(Boolean, default=False)
    server_type: Mapped[str] = mapped_column(String(255), default="vm")
    master_lb_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    floating_ip_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    tags: Mapped[str | None] = mapped_column(String(255))
    #: Explicit COE driver (Magnum 2025+); null means "the enabled driver for coe".
    driver: Mapped[str | None] = mapped_column(String(255))
    row_version: Mapped[int] = row_version_column()


class Cluster(Base, Timestamps):
    __tablename__ = "clusters"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True, index=True)
    name: Mapped[str | None] = mapped_column(String(255), index=True)
    project_id: Mapped[str] = mapped_column(String(255), index=True)
    user_id: Mapped[str] = mapped_column(String(255))
    cluster_template_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("cluster_templates.uuid"), index=True
    )
    keypair: Mapped[str | None] = mapped_column(String(255))
    docker_volume_size: Mapped[int | None] = mapped_column(Integer)
    labels: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    master_flavor_id: Mapped[str | None] = mapped_column(String(255))
    flavor_id: Mapped[str | None] = mapped_column(String(255))
    fixed_network: Mapped[str | None] = mapped_column(String(255))
    fixed_subnet: Mapped[str | None] = mapped_column(String(255))
    floating_ip_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    master_lb_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    create_timeout: Mapped[int] = mapped_column(Integer, default=60)
    discovery_url: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(32), index=True)
    status_reason: Mapped[str | None] = mapped_column(Text)
    health_status: Mapped[str | None] = mapped_column(String(16))
    health_status_reason: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    stack_id: Mapped[str | None] = mapped_column(String(255))
    api_address: Mapped[str | None] = mapped_column(String(255))
    master_addresses: Mapped[list[Any] | None] = mapped_column(JSON)
    node_addresses: Mapped[list[Any] | None] = mapped_column(JSON)
    coe_version: Mapped[str | None] = mapped_column(String(255))
    container_version: Mapped[str | None] = mapped_column(String(255))
    provider: Mapped[str] = mapped_column(String(64), default="local")
    #: Which view created it ("bay" or "cluster"): bays hide cluster-only keys.
    created_via: Mapped[str] = mapped_column(String(16), default="cluster")
    row_version: Mapped[int] = row_version_column()


class NodeGroup(Base, Timestamps):
    __tablename__ = "nodegroups"
    __table_args__ = (
        UniqueConstraint("cluster_id", "name", name="uq_nodegroup_cluster_name"),
        # A cluster list's node counts from the index alone (migration 0007).
        Index("ix_nodegroups_cluster_counts", "cluster_id", "role", "node_count"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True, index=True)
    name: Mapped[str] = mapped_column(String(255))
    cluster_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("clusters.uuid", ondelete="CASCADE"), index=True
    )
    project_id: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(255))
    node_count: Mapped[int] = mapped_column(Integer)
    min_node_count: Mapped[int] = mapped_column(Integer, default=0)
    max_node_count: Mapped[int | None] = mapped_column(Integer)
    flavor_id: Mapped[str | None] = mapped_column(String(255))
    image_id: Mapped[str | None] = mapped_column(String(255))
    docker_volume_size: Mapped[int | None] = mapped_column(Integer)
    labels: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    node_addresses: Mapped[list[Any] | None] = mapped_column(JSON)
    #: Provider node names currently in the group, in creation order.
    node_names: Mapped[list[Any] | None] = mapped_column(JSON)
    stack_id: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(32))
    status_reason: Mapped[str | None] = mapped_column(Text)
    version: Mapped[str | None] = mapped_column(String(20))


class Operation(Base, Timestamps):
    """The work queue: one row per requested change, claimed by a worker with a lease."""

    __tablename__ = "operations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True, index=True)
    cluster_id: Mapped[str] = mapped_column(String(36), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), index=True)  # pending | running | done | failed
    step_index: Mapped[int] = mapped_column(Integer, default=0)
    step_count: Mapped[int | None] = mapped_column(Integer)
    step_name: Mapped[str | None] = mapped_column(String(255))
    detail: Mapped[str | None] = mapped_column(Text)
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime(), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    deadline: Mapped[datetime | None] = mapped_column(UtcDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    error: Mapped[str | None] = mapped_column(Text)
    user_id: Mapped[str | None] = mapped_column(String(255))
    project_id: Mapped[str | None] = mapped_column(String(255))


class ClusterEvent(Base):
    """Status history shown by the dashboard and ``cluster-events``."""

    __tablename__ = "cluster_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cluster_id: Mapped[str] = mapped_column(String(36), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    status: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)


class ClusterCa(Base, Timestamps):
    """One of a cluster's CAs (``kind``: ``cluster``, the one ``/v1/certificates`` serves;
    a COE may add others, e.g. Kubernetes' ``etcd`` or ``front-proxy``). Keys are
    encrypted at rest and never leave the service.

    While a CA rotation runs, ``previous_ca_cert`` is the CA being replaced: still
    trusted (the trust bundle is current + previous) until the rotation retires it.
    Keys derived for a purpose (the Kubernetes service-account signing key) come from
    ``key_root_encrypted``, or the CA's key while that is NULL; the first rotation
    pins the old CA key there, so derived keys outlive CA rotations.
    """

    __tablename__ = "cluster_cas"
    __table_args__ = (UniqueConstraint("cluster_id", "kind", name="uq_cluster_cas_cluster_kind"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cluster_id: Mapped[str] = mapped_column(String(36), index=True)
    kind: Mapped[str] = mapped_column(String(32), default="cluster", server_default="cluster")
    ca_cert: Mapped[str] = mapped_column(Text)
    ca_key_encrypted: Mapped[str] = mapped_column(Text)
    client_cert: Mapped[str | None] = mapped_column(Text)
    client_key_encrypted: Mapped[str | None] = mapped_column(Text)
    generation: Mapped[int] = mapped_column(Integer, default=1)
    previous_ca_cert: Mapped[str | None] = mapped_column(Text)
    key_root_encrypted: Mapped[str | None] = mapped_column(Text)


class Flavor(Base, Timestamps):
    __tablename__ = "flavors"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    vcpus: Mapped[float] = mapped_column(Float)
    ram_mb: Mapped[int] = mapped_column(Integer)
    disk_gb: Mapped[int] = mapped_column(Integer, default=0)


class Network(Base, Timestamps):
    __tablename__ = "networks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    external: Mapped[bool] = mapped_column(Boolean, default=False)


class Image(Base, Timestamps):
    __tablename__ = "images"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    os_distro: Mapped[str | None] = mapped_column(String(255))
    source: Mapped[str | None] = mapped_column(String(255))  # node image reference
    build_method: Mapped[str | None] = mapped_column(String(32))


class Keypair(Base, Timestamps):
    __tablename__ = "keypairs"
    __table_args__ = (UniqueConstraint("project_id", "name", name="uq_keypair_project_name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    project_id: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[str] = mapped_column(String(255))
    public_key: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(255))


class Quota(Base, Timestamps):
    __tablename__ = "quotas"
    __table_args__ = (UniqueConstraint("project_id", "resource", name="uq_quota_project_resource"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[str] = mapped_column(String(255))
    resource: Mapped[str] = mapped_column(String(255))
    hard_limit: Mapped[int] = mapped_column(Integer)


class Service(Base, Timestamps):
    """Conductor heartbeats (``/v1/mservices``)."""

    __tablename__ = "services"
    __table_args__ = (UniqueConstraint("host", "binary", name="uq_service_host_binary"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    binary: Mapped[str] = mapped_column(String(255))
    report_count: Mapped[int] = mapped_column(Integer, default=0)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled_reason: Mapped[str | None] = mapped_column(String(255))
    last_seen_up: Mapped[datetime | None] = mapped_column(UtcDateTime())
