"""Per-cluster CAs: create, sign user CSRs, issue daemon certs, rotate.

CA and client private keys are encrypted at rest (``certs.keys.SecretBox``) with the
service secret (``secret_key`` setting, else ``DATA_DIR/secret.key``) and never
leave the service.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from flotilla.certs import authority
from flotilla.certs.keys import SecretBox, load_or_create_secret
from flotilla.context import RequestContext
from flotilla.db import models as m
from flotilla.db.models import utcnow
from flotilla.domain import TlsMaterial
from flotilla.errors import Forbidden, Invalid, NotFound
from flotilla.settings import Settings


def secret_box(settings: Settings) -> SecretBox:
    secret = settings.secret_key or load_or_create_secret(Path(settings.data_dir) / "secret.key")
    return SecretBox(secret)


def _row(session: Session, cluster_uuid: str) -> m.ClusterCa | None:
    return session.scalars(select(m.ClusterCa).where(m.ClusterCa.cluster_id == cluster_uuid)).first()


def ensure_ca(
    session: Session, box: SecretBox, cluster_uuid: str, name: str, *, generation: int = 1
) -> m.ClusterCa:
    """The cluster's CA at ``generation`` or newer; creates or replaces it. Idempotent."""
    row = _row(session, cluster_uuid)
    if row is not None and row.generation >= generation:
        return row
    ca_cert, ca_key = authority.create_ca(name or cluster_uuid)
    client_cert, client_key = authority.issue_client_cert(ca_cert, ca_key, common_name="flotilla-conductor")
    if row is None:
        row = m.ClusterCa(cluster_id=cluster_uuid)
        session.add(row)
    row.ca_cert = ca_cert
    row.ca_key_encrypted = box.encrypt(ca_key.encode())
    row.client_cert = client_cert
    row.client_key_encrypted = box.encrypt(client_key.encode())
    row.generation = generation
    row.updated_at = utcnow()
    session.flush()
    return row


def _require(session: Session, cluster_uuid: str) -> m.ClusterCa:
    row = _row(session, cluster_uuid)
    if row is None:
        raise NotFound(
            f"Cluster {cluster_uuid} has no CA yet; wait until its creation gets past its first step."
        )
    return row


def _policy(ctx: RequestContext, cluster: m.Cluster, action: str) -> None:
    """Magnum's admin_or_user: the user who created the cluster, or an admin.

    We relax it to the cluster's project members (readers may fetch the CA), which is
    what teams sharing a project expect; another project never gets in.
    """
    allowed = ctx.can_read if action == "get" else ctx.can_write
    if not allowed or (not ctx.is_admin and cluster.project_id != ctx.project_id):
        raise Forbidden(f"Policy doesn't allow certificate:{action} to be performed.")


def ca_pem(session: Session, ctx: RequestContext, cluster: m.Cluster) -> str:
    _policy(ctx, cluster, "get")
    return _require(session, cluster.uuid).ca_cert


def sign(session: Session, ctx: RequestContext, box: SecretBox, cluster: m.Cluster, csr_pem: str) -> str:
    """Sign a user's CSR with the cluster's CA (Magnum's extension rules)."""
    _policy(ctx, cluster, "create")
    if not isinstance(csr_pem, str) or not csr_pem.strip():
        raise Invalid("Received invalid csr (empty).")
    row = _require(session, cluster.uuid)
    return authority.sign_csr(row.ca_cert, box.decrypt(row.ca_key_encrypted).decode(), csr_pem)


def server_tls(
    session: Session, box: SecretBox, cluster_uuid: str, cn: str, dns_names: Sequence[str], ips: Sequence[str]
) -> TlsMaterial:
    row = _require(session, cluster_uuid)
    cert, key = authority.issue_server_cert(
        row.ca_cert, box.decrypt(row.ca_key_encrypted).decode(), common_name=cn, dns_names=dns_names, ips=ips
    )
    return TlsMaterial(ca_pem=row.ca_cert, cert_pem=cert, key_pem=key)


def client_tls(session: Session, box: SecretBox, cluster_uuid: str) -> TlsMaterial:
    row = _require(session, cluster_uuid)
    if row.client_cert is None or row.client_key_encrypted is None:
        raise NotFound(f"Cluster {cluster_uuid} has no conductor client certificate.")
    return TlsMaterial(
        ca_pem=row.ca_cert, cert_pem=row.client_cert, key_pem=box.decrypt(row.client_key_encrypted).decode()
    )


def client_cert(
    session: Session, box: SecretBox, cluster_uuid: str, cn: str, organization: str | None
) -> TlsMaterial:
    """A new client certificate ``CN=cn[, O=organization]`` from the cluster's CA."""
    row = _require(session, cluster_uuid)
    cert, key = authority.issue_client_cert(
        row.ca_cert, box.decrypt(row.ca_key_encrypted).decode(), common_name=cn, organization=organization
    )
    return TlsMaterial(ca_pem=row.ca_cert, cert_pem=cert, key_pem=key)


def derived_key(session: Session, box: SecretBox, cluster_uuid: str, purpose: str) -> str:
    """A PEM key derived from the cluster CA's key (stable while the CA lives)."""
    row = _require(session, cluster_uuid)
    return authority.derive_key(box.decrypt(row.ca_key_encrypted).decode(), purpose)
