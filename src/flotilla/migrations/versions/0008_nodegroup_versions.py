"""A nodegroup insert, update or delete changes its cluster's row_version (whoever writes:
the API, the conductor, another process, a raw statement), so a cluster's row_version
alone says whether its rendered list row or show (node counts, faults) still holds, and a
list's key read need not sum the nodegroups of every row.

Lock order: the trigger updates the cluster row after the nodegroup row. Every writer of
nodegroups holds its cluster's row already (the service layer writes the cluster, its
nodegroups and the operation in one transaction, the cluster first: ``clusters.get(...,
for_update=True)``, ``operations.finish``, ``cluster_reports.record_outputs``), so on
PostgreSQL the trigger takes no new lock there and adds no lock-order cycle.

On SQLite a later migration that rebuilds ``nodegroups`` (``batch_alter_table``: a copy of
the table) drops these triggers with it and must create them again.

Revision ID: 0008_nodegroup_versions
Revises: 0007_row_versions
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008_nodegroup_versions"
down_revision: str | None = "0007_row_versions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: SQLite's triggers, by the nodegroup event, and the clusters each one touches.
SQLITE = {
    "insert": "uuid = NEW.cluster_id",
    "update": "uuid IN (OLD.cluster_id, NEW.cluster_id)",
    "delete": "uuid = OLD.cluster_id",
}


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # Any UPDATE of clusters draws the next version (0007's BEFORE trigger on clusters).
        op.execute(
            "CREATE FUNCTION flotilla_nodegroup_touches_cluster() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN "
            "IF TG_OP <> 'INSERT' THEN "
            "UPDATE clusters SET row_version = row_version WHERE uuid = OLD.cluster_id; END IF; "
            "IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.cluster_id IS DISTINCT FROM OLD.cluster_id) THEN "
            "UPDATE clusters SET row_version = row_version WHERE uuid = NEW.cluster_id; END IF; "
            "RETURN NULL; END $$"
        )
        op.execute(
            "CREATE TRIGGER nodegroups_cluster_version AFTER INSERT OR UPDATE OR DELETE ON nodegroups "
            "FOR EACH ROW EXECUTE FUNCTION flotilla_nodegroup_touches_cluster()"
        )
        return
    # A new random() version, as 0007's triggers draw (their WHEN sees it changed: no second round).
    for event, where in SQLITE.items():
        op.execute(
            f"CREATE TRIGGER nodegroups_cluster_version_{event} AFTER {event.upper()} ON nodegroups "
            f"FOR EACH ROW BEGIN UPDATE clusters SET row_version = random() WHERE {where}; END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER nodegroups_cluster_version ON nodegroups")
        op.execute("DROP FUNCTION flotilla_nodegroup_touches_cluster()")
        return
    for event in SQLITE:
        op.execute(f"DROP TRIGGER nodegroups_cluster_version_{event}")
