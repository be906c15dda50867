"""The certificates service over a real database: several CAs per cluster, the overlap of a
CA rotation (old + new trusted until retired), derived keys that outlive rotations, and
the migration that brings an existing cluster's CA into that schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from flotilla.certs import authority
from flotilla.certs.keys import SecretBox
from flotilla.db import migrate
from flotilla.db import models as m
from flotilla.errors import NotFound
from flotilla.services import certificates

BOX = SecretBox("test secret")
UUID = "c0ffee00-0000-4000-8000-000000000001"
SA = "kubernetes service-account signing key"


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    e = create_engine(db_url, poolclass=NullPool)
    yield e
    e.dispose()


def _s(engine: Engine) -> Session:
    return Session(engine, expire_on_commit=False)


def _certs(bundle: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(bundle.encode())


def _verifies(bundle: str, cert_pem: str) -> bool:
    """Whether ``cert_pem`` was issued (and signed) by one of the CAs in ``bundle``."""
    leaf = x509.load_pem_x509_certificate(cert_pem.encode())
    for ca in _certs(bundle):
        try:
            leaf.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False


def test_rotation_keeps_the_old_ca_trusted_until_retired(engine: Engine) -> None:
    with _s(engine) as s, s.begin():
        first = certificates.ensure_ca(s, BOX, UUID, "k1")
        old_ca = first.ca_cert
        old_client = certificates.client_cert(s, BOX, UUID, "admin", "system:masters")
        key_before = certificates.derived_key(s, BOX, UUID, SA)
        assert certificates.trust_bundle(s, UUID) == old_ca
        # Idempotent at the same generation (a resumed step).
        assert certificates.ensure_ca(s, BOX, UUID, "k1").ca_cert == old_ca
    with _s(engine) as s, s.begin():
        row = certificates.ensure_ca(s, BOX, UUID, "k1", generation=2)
        new_ca = row.ca_cert
        assert new_ca != old_ca and row.previous_ca_cert == old_ca and row.generation == 2
        bundle = certificates.trust_bundle(s, UUID)
        assert [c.subject for c in _certs(bundle)] == [c.subject for c in _certs(new_ca + old_ca)]
        assert _certs(bundle) == _certs(new_ca) + _certs(old_ca)
        # New certificates come from the new CA; both old and new ones verify against the bundle.
        new_client = certificates.client_cert(s, BOX, UUID, "admin", "system:masters")
        assert new_client.ca_pem == new_ca
        assert _verifies(bundle, new_client.cert_pem) and _verifies(bundle, old_client.cert_pem)
        assert not _verifies(new_ca, old_client.cert_pem)
        # The conductor's own certificate is the new CA's; it verifies servers on either.
        conductor = certificates.client_tls(s, BOX, UUID)
        assert _verifies(new_ca, conductor.cert_pem) and conductor.ca_pem == bundle
        # The service-account key does not change with the CA (tokens stay valid).
        assert certificates.derived_key(s, BOX, UUID, SA) == key_before
    with _s(engine) as s, s.begin():
        # Asked again mid-rotation (a retried rotation): same new CA, generation moves on.
        again = certificates.ensure_ca(s, BOX, UUID, "k1", generation=3)
        assert again.ca_cert == new_ca and again.previous_ca_cert == old_ca and again.generation == 3
        assert certificates.retire_previous(s, UUID) is True
        assert certificates.retire_previous(s, UUID) is False
        assert certificates.trust_bundle(s, UUID) == new_ca
        assert not _verifies(certificates.client_tls(s, BOX, UUID).ca_pem, old_client.cert_pem)
    with _s(engine) as s, s.begin():
        # A second rotation: derived keys still those of the cluster's first CA.
        row = certificates.ensure_ca(s, BOX, UUID, "k1", generation=4)
        assert row.previous_ca_cert == new_ca and row.ca_cert not in (old_ca, new_ca)
        assert certificates.derived_key(s, BOX, UUID, SA) == key_before
        assert certificates.derived_key(s, BOX, UUID, "other") != key_before


def test_several_cas_per_cluster(engine: Engine) -> None:
    with _s(engine) as s, s.begin():
        with pytest.raises(NotFound):
            certificates.ensure_kind(s, BOX, UUID, "etcd")  # no cluster CA yet
        cluster = certificates.ensure_ca(s, BOX, UUID, "k1")
        etcd = certificates.ensure_kind(s, BOX, UUID, "etcd")
        assert certificates.ensure_kind(s, BOX, UUID, "etcd").id == etcd.id
        assert etcd.ca_cert != cluster.ca_cert and authority.common_name(etcd.ca_cert) == "k1-etcd"
        assert etcd.client_cert is None  # the conductor's certificate is the cluster CA's
        peer = certificates.server_tls(s, BOX, UUID, "m0", ["m0"], ["10.0.0.5"], "etcd")
        assert peer.ca_pem == etcd.ca_cert and _verifies(etcd.ca_cert, peer.cert_pem)
        assert not _verifies(cluster.ca_cert, peer.cert_pem)
    with _s(engine) as s, s.begin():
        certificates.ensure_ca(s, BOX, UUID, "k1", generation=2)  # a rotation replaces every kind
        rows = {r.kind: r for r in s.scalars(select(m.ClusterCa).where(m.ClusterCa.cluster_id == UUID))}
        assert set(rows) == {"cluster", "etcd"}
        assert all(r.generation == 2 and r.previous_ca_cert for r in rows.values())
        assert rows["etcd"].previous_ca_cert == etcd.ca_cert
        assert certificates.trust_bundle(s, UUID, "etcd") == rows["etcd"].ca_cert + etcd.ca_cert


def test_migration_keeps_an_existing_clusters_ca(tmp_path: Path) -> None:
    """A CA stored before revision 0006 becomes the cluster's ``cluster`` CA (no previous,
    derived keys from its own key); a downgrade keeps only cluster CAs."""
    engine = create_engine(f"sqlite:///{tmp_path / 'f.db'}", poolclass=NullPool)
    migrate.upgrade(engine, "0005_token_expiry")
    ca_cert, ca_key = authority.create_ca("legacy")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO cluster_cas (cluster_id, ca_cert, ca_key_encrypted, generation, created_at) "
            "VALUES (?, ?, ?, 1, '2026-01-01 00:00:00')",
            (UUID, ca_cert, BOX.encrypt(ca_key.encode())),
        )
    migrate.upgrade(engine)
    with _s(engine) as s, s.begin():
        row = s.scalars(select(m.ClusterCa)).one()
        assert (row.kind, row.previous_ca_cert, row.key_root_encrypted) == ("cluster", None, None)
        assert certificates.derived_key(s, BOX, UUID, SA) == authority.derive_key(ca_key, SA)
        certificates.ensure_kind(s, BOX, UUID, "etcd")
    cfg = migrate.alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0005_token_expiry")
    with engine.begin() as conn:
        left = conn.exec_driver_sql("SELECT cluster_id, ca_cert FROM cluster_cas").all()
    assert left == [(UUID, ca_cert)]
    engine.dispose()
