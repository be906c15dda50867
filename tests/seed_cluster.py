"""Finish a cluster's create operation the way the conductor records it, in a server's
database, without running its COE steps: for tests of what clients do with a finished
cluster (``cluster-config``, ``cluster-image-load``) on servers started with the conductor
disabled (``FLOTILLA_CONDUCTOR__ENABLED=false``). Same service calls as tests/web's
``Conductor``: the CA is created, the addresses stored, the operation finished.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import update

from flotilla.db import models as m
from flotilla.db.engine import Database
from flotilla.services import certificates, operations
from flotilla.settings import Settings

OWNER = "test-seeder"


def finish_create(data_dir: Path, cluster_uuid: str, api_address: str, addresses: list[str]) -> None:
    """Claim the cluster's pending create and complete it with ``api_address``; raises if none."""
    settings = Settings(data_dir=data_dir)
    db = Database(settings)
    try:
        with db.session() as s:
            op = operations.claim(s, OWNER, 60, skip_locked=False)
            assert op is not None and op.cluster_id == cluster_uuid, op
            certificates.ensure_ca(s, certificates.secret_box(settings), cluster_uuid, "seeded")
            s.execute(
                update(m.Cluster)
                .where(m.Cluster.uuid == cluster_uuid)
                .values(api_address=api_address, master_addresses=addresses[:1], node_addresses=addresses[1:])
            )
            operations.finish(s, op, OWNER)
    finally:
        db.dispose()
