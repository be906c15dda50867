"""row_version on cluster_templates and clusters: changed by the database on every
insert and update, whoever writes (the API, the conductor, another process, a raw
statement), so a list can tell in one narrow query which of its rendered rows still hold;
and an index that answers a cluster list's node counts from the index alone

Revision ID: 0007_row_versions
Revises: 0006_ca_kinds_rotation
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_row_versions"
down_revision: str | None = "0006_ca_kinds_rotation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("cluster_templates", "clusters")
COUNTS_INDEX = "ix_nodegroups_cluster_counts"


def upgrade() -> None:
    # A cluster list's node counts (two correlated sums per row) without visiting the rows.
    op.create_index(COUNTS_INDEX, "nodegroups", ["cluster_id", "role", "node_count"])
    # Existing rows keep 0: with the (unique) uuid that is still one key per row state.
    for table in TABLES:
        op.add_column(table, sa.Column("row_version", sa.BigInteger(), nullable=False, server_default="0"))
    if op.get_bind().dialect.name == "postgresql":
        # A sequence never hands out a value twice (not even across rolled-back transactions).
        op.execute("CREATE SEQUENCE flotilla_row_versions")
        op.execute(
            "CREATE FUNCTION flotilla_next_row_version() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN NEW.row_version := nextval('flotilla_row_versions'); RETURN NEW; END $$"
        )
        for table in TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_row_version BEFORE INSERT OR UPDATE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION flotilla_next_row_version()"
            )
        return
    # SQLite cannot change NEW in a trigger: the row is updated again right after, with a
    # 64-bit random() (recursive triggers are off, and the WHEN stops a second round anyway).
    for table in TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_row_version_insert AFTER INSERT ON {table} FOR EACH ROW "
            f"WHEN NEW.row_version = 0 BEGIN UPDATE {table} SET row_version = random() WHERE id = NEW.id; END"
        )
        op.execute(
            f"CREATE TRIGGER {table}_row_version_update AFTER UPDATE ON {table} FOR EACH ROW "
            "WHEN NEW.row_version = OLD.row_version "
            f"BEGIN UPDATE {table} SET row_version = random() WHERE id = NEW.id; END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"DROP TRIGGER {table}_row_version ON {table}")
        op.execute("DROP FUNCTION flotilla_next_row_version()")
        op.execute("DROP SEQUENCE flotilla_row_versions")
    else:
        for table in TABLES:
            op.execute(f"DROP TRIGGER {table}_row_version_insert")
            op.execute(f"DROP TRIGGER {table}_row_version_update")
    for table in TABLES:
        # Not a batch (table copy): dropping ``clusters`` would cascade to its nodegroups.
        op.execute(f"ALTER TABLE {table} DROP COLUMN row_version")
    op.drop_index(COUNTS_INDEX, table_name="nodegroups")
