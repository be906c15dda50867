"""several CAs per cluster (kind), the previous CA kept while a rotation runs, and a
root for derived keys that outlives CA rotations

Revision ID: 0006_ca_kinds_rotation
Revises: 0005_token_expiry
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_ca_kinds_rotation"
down_revision: str | None = "0005_token_expiry"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cluster_cas") as batch:
        # Every existing row is a cluster's (only) CA.
        batch.add_column(sa.Column("kind", sa.String(length=32), nullable=False, server_default="cluster"))
        batch.add_column(sa.Column("previous_ca_cert", sa.Text(), nullable=True))
        # NULL: derived keys come from the CA's own key (what every cluster did before).
        batch.add_column(sa.Column("key_root_encrypted", sa.Text(), nullable=True))
        batch.drop_index(batch.f("ix_cluster_cas_cluster_id"))
        batch.create_index(batch.f("ix_cluster_cas_cluster_id"), ["cluster_id"], unique=False)
        batch.create_unique_constraint("uq_cluster_cas_cluster_kind", ["cluster_id", "kind"])


def downgrade() -> None:
    # Only the cluster CA survives a downgrade (the old schema holds one CA per cluster).
    op.execute("DELETE FROM cluster_cas WHERE kind <> 'cluster'")
    with op.batch_alter_table("cluster_cas") as batch:
        batch.drop_constraint("uq_cluster_cas_cluster_kind", type_="unique")
        batch.drop_index(batch.f("ix_cluster_cas_cluster_id"))
        batch.create_index(batch.f("ix_cluster_cas_cluster_id"), ["cluster_id"], unique=True)
        batch.drop_column("key_root_encrypted")
        batch.drop_column("previous_ca_cert")
        batch.drop_column("kind")
