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
from flotilla.drivers.registry import installed_coe_drivers
from flotilla.errors import Forbidden, Invalid, NotFound
from flotilla.settings import Settings


def secret_box(settings: Settings) -> SecretBox:
    secret = settings.secret_key or load_or_create_secret(Path(settings.data_dir) / "secret.key")
    return SecretBox(secret)


#: The CA ``/v1/certificates`` serves and signs CSRs with (Magnum's one cluster CA).
CLUSTER = "cluster"


def ca_cert_types() -> dict[str, str]:
    """Magnum's ``ca_cert_type`` values -> the CA kind serving each, as the installed COE
    drivers declare them (``CoeDriver.ca_cert_types``), sorted by value."""
    found: dict[str, str] = {}
    for driver in installed_coe_drivers():
        found.update(driver.ca_cert_types)
    return dict(sorted(found.items()))


def ca_kind(ca_cert_type: str | None) -> str:
    """The CA kind that serves ``ca_cert_type`` (none given: the cluster CA). A cluster
    without a CA of that kind is served its cluster CA (see :func:`ca_pem`).

    Raises Invalid for a value no installed COE driver declares."""
    if not ca_cert_type:
        return CLUSTER
    kinds = ca_cert_types()
    if ca_cert_type not in kinds:
        raise Invalid(f"Invalid ca_cert_type {ca_cert_type}; expected one of {', '.join(kinds) or 'none'}.")
    return kinds[ca_cert_type]


def _row(session: Session, cluster_uuid: str, kind: str = CLUSTER) -> m.ClusterCa | None:
    return session.scalars(
        select(m.ClusterCa).where(m.ClusterCa.cluster_id == cluster_uuid, m.ClusterCa.kind == kind)
    ).first()


def _rows(session: Session, cluster_uuid: str) -> list[m.ClusterCa]:
    return list(session.scalars(select(m.ClusterCa).where(m.ClusterCa.cluster_id == cluster_uuid)))


def _new_ca(box: SecretBox, row: m.ClusterCa, name: str) -> None:
    ca_cert, ca_key = authority.create_ca(name)
    row.ca_cert = ca_cert
    row.ca_key_encrypted = box.encrypt(ca_key.encode())
    if row.kind == CLUSTER:
        client_cert, client_key = authority.issue_client_cert(
            ca_cert, ca_key, common_name="flotilla-conductor"
        )
        row.client_cert = client_cert
        row.client_key_encrypted = box.encrypt(client_key.encode())


def ensure_ca(
    session: Session, box: SecretBox, cluster_uuid: str, name: str, *, generation: int = 1
) -> m.ClusterCa:
    """Every CA of the cluster at ``generation`` or newer; creates the cluster CA, or
    begins a rotation: each CA is replaced by a new one and the replaced certificate is
    kept as ``previous_ca_cert`` (still trusted, see :func:`trust_bundle`) until
    :func:`retire_previous` ends the overlap. A rotation requested while an earlier one
    is unfinished (a previous CA is still kept) keeps the CAs it made: only the
    generation moves, so certificates already issued from them stay valid and the
    retried phases converge. Idempotent; returns the cluster CA."""
    rows = _rows(session, cluster_uuid)
    if not any(r.kind == CLUSTER for r in rows):
        row = m.ClusterCa(cluster_id=cluster_uuid, kind=CLUSTER)
        session.add(row)
        _new_ca(box, row, name or cluster_uuid)
        row.generation = generation
        rows.append(row)
    for row in rows:
        if row.generation >= generation:
            continue
        if row.previous_ca_cert is None:
            if row.key_root_encrypted is None:
                row.key_root_encrypted = row.ca_key_encrypted  # derived keys stay what they were
            row.previous_ca_cert = row.ca_cert
            _new_ca(box, row, _subject(row, name or cluster_uuid))
        row.generation = generation
        row.updated_at = utcnow()
    session.flush()
    return next(r for r in rows if r.kind == CLUSTER)


def _subject(row: m.ClusterCa, name: str) -> str:
    return name if row.kind == CLUSTER else f"{name}-{row.kind}"


def ensure_kind(session: Session, box: SecretBox, cluster_uuid: str, kind: str) -> m.ClusterCa:
    """The cluster's CA of ``kind`` (e.g. ``etcd``), made at the cluster CA's generation
    on first use. Raises NotFound before the cluster CA exists."""
    row = _row(session, cluster_uuid, kind)
    if row is not None:
        return row
    cluster = _require(session, cluster_uuid)
    row = m.ClusterCa(cluster_id=cluster_uuid, kind=kind, generation=cluster.generation)
    session.add(row)
    _new_ca(box, row, _subject(row, authority.common_name(cluster.ca_cert) or cluster_uuid))
    session.flush()
    return row


def trust_bundle(session: Session, cluster_uuid: str, kind: str = CLUSTER) -> str:
    """PEM of the CAs of ``kind`` the cluster trusts now: the current one, and the one it
    replaces while a rotation runs."""
    row = _require(session, cluster_uuid, kind)
    return _bundle(row)


def _bundle(row: m.ClusterCa) -> str:
    pems = [row.ca_cert] + ([row.previous_ca_cert] if row.previous_ca_cert else [])
    return "".join(p if p.endswith("\n") else p + "\n" for p in pems)


def retire_previous(session: Session, cluster_uuid: str) -> bool:
    """End a rotation's overlap: forget every replaced CA. Idempotent; True if any was kept."""
    changed = False
    for row in _rows(session, cluster_uuid):
        if row.previous_ca_cert is not None:
            row.previous_ca_cert = None
            row.updated_at = utcnow()
            changed = True
    session.flush()
    return changed


def _require(session: Session, cluster_uuid: str, kind: str = CLUSTER) -> m.ClusterCa:
    row = _row(session, cluster_uuid, kind)
    if row is None:
        raise NotFound(
            f"Cluster {cluster_uuid} has no {kind} CA yet; wait until its creation gets past its first step."
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


def ca_pem(session: Session, ctx: RequestContext, cluster: m.Cluster, kind: str = CLUSTER) -> str:
    """The CA certificate (``kind``; the cluster CA when the cluster has no CA of that
    kind, as its daemons then use the cluster CA for it). While a rotation runs: both
    the new and the replaced CA, the bundle the cluster trusts, so a client configured
    now works before and after the servers switch to certificates from the new CA."""
    _policy(ctx, cluster, "get")
    row = _row(session, cluster.uuid, kind) or _require(session, cluster.uuid)
    return _bundle(row)


def sign(session: Session, ctx: RequestContext, box: SecretBox, cluster: m.Cluster, csr_pem: str) -> str:
    """Sign a user's CSR with the cluster's CA (Magnum's extension rules)."""
    _policy(ctx, cluster, "create")
    if not isinstance(csr_pem, str) or not csr_pem.strip():
        raise Invalid("Received invalid csr (empty).")
    row = _require(session, cluster.uuid)
    return authority.sign_csr(row.ca_cert, box.decrypt(row.ca_key_encrypted).decode(), csr_pem)


def server_tls(
    session: Session,
    box: SecretBox,
    cluster_uuid: str,
    cn: str,
    dns_names: Sequence[str],
    ips: Sequence[str],
    kind: str = CLUSTER,
) -> TlsMaterial:
    row = _require(session, cluster_uuid, kind)
    cert, key = authority.issue_server_cert(
        row.ca_cert, box.decrypt(row.ca_key_encrypted).decode(), common_name=cn, dns_names=dns_names, ips=ips
    )
    return TlsMaterial(ca_pem=row.ca_cert, cert_pem=cert, key_pem=key)


def client_tls(session: Session, box: SecretBox, cluster_uuid: str) -> TlsMaterial:
    """The conductor's client certificate (from the current cluster CA); ``ca_pem`` is the
    trust bundle, so during a rotation it verifies servers on either CA."""
    row = _require(session, cluster_uuid)
    if row.client_cert is None or row.client_key_encrypted is None:
        raise NotFound(f"Cluster {cluster_uuid} has no conductor client certificate.")
    return TlsMaterial(
        ca_pem=_bundle(row), cert_pem=row.client_cert, key_pem=box.decrypt(row.client_key_encrypted).decode()
    )


def client_cert(
    session: Session,
    box: SecretBox,
    cluster_uuid: str,
    cn: str,
    organization: str | None,
    kind: str = CLUSTER,
) -> TlsMaterial:
    """A new client certificate ``CN=cn[, O=organization]`` from the cluster's CA of ``kind``."""
    row = _require(session, cluster_uuid, kind)
    cert, key = authority.issue_client_cert(
        row.ca_cert, box.decrypt(row.ca_key_encrypted).decode(), common_name=cn, organization=organization
    )
    return TlsMaterial(ca_pem=row.ca_cert, cert_pem=cert, key_pem=key)


def derived_key(session: Session, box: SecretBox, cluster_uuid: str, purpose: str) -> str:
    """A PEM key derived for ``purpose``: stable for the cluster's life, CA rotations
    included (its root is the first CA's key, pinned when that CA is replaced)."""
    row = _require(session, cluster_uuid)
    root = row.key_root_encrypted or row.ca_key_encrypted
    return authority.derive_key(box.decrypt(root).decode(), purpose)
