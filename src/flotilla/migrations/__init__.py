"""The Alembic chain (``versions/``), run at every start (``flotilla.db.migrate.upgrade``).

For migration authors: ``row_version`` (on ``cluster_templates`` and ``clusters``) is set
by database triggers only (0007; 0008 adds the ``nodegroups`` triggers that change their
cluster's). The render cache trusts it: a missing trigger serves stale lists and shows,
with no error anywhere. On SQLite, a migration that rebuilds one of those three tables
(``op.batch_alter_table``, whose "move and copy" creates a new table and drops the old)
drops that table's triggers with it, and must create them again (the SQL is in 0007 and
0008); PostgreSQL alters in place and keeps them. ``tests/unit/test_row_version_triggers.py``
checks on SQLite and PostgreSQL, after the whole chain, that every trigger exists and that
every write path changes ``row_version``, and fails until the triggers are back.
"""
