"""The data dir is private (issue 14, item 6): 0700 dir, 0600 database, keys and
credentials, whatever the umask was, and files from older versions are tightened."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from flotilla.datadir import PRIVATE_UMASK, secure_sqlite, sqlite_path
from flotilla.db.engine import Database
from flotilla.services import bootstrap
from flotilla.settings import ConductorSettings, Settings


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The permissive umask many shells have: files would be 0644 without explicit modes."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, auth_strategy="token", conductor=ConductorSettings(enabled=False))


def test_new_data_dir_database_and_credentials_are_private(tmp_path: Path, open_umask: None) -> None:
    data_dir = tmp_path / "share" / "flotilla"
    settings = _settings(data_dir)
    db = Database(settings)
    try:
        bootstrap.prepare_database(db)
        clouds = bootstrap.ensure_admin_credentials(settings, db)
        with db.session() as s:  # a write, so the WAL file exists
            from flotilla.services import tokens

            tokens.create(s, user_id="u", project_id="p", roles=["member"], description=None)
    finally:
        db.dispose()
    assert _mode(data_dir) == 0o700
    assert _mode(tmp_path / "share") == 0o755  # a shared parent is left alone
    db_file = data_dir / "flotilla.db"
    assert _mode(db_file) == 0o600
    for companion in (data_dir / "flotilla.db-wal", data_dir / "flotilla.db-shm"):
        if companion.exists():
            assert _mode(companion) == 0o600, companion
    assert clouds is not None and _mode(clouds) == 0o600
    others = [p for p in data_dir.rglob("*") if _mode(p) & 0o077]
    assert others == [], f"readable by group/others: {others}"


def test_files_of_an_older_version_are_tightened(tmp_path: Path, open_umask: None) -> None:
    data_dir = tmp_path / "flotilla"
    data_dir.mkdir(mode=0o755)
    os.chmod(data_dir, 0o755)
    db_file = data_dir / "flotilla.db"
    db_file.touch()
    os.chmod(db_file, 0o644)
    (data_dir / "flotilla.db-wal").touch()
    os.chmod(data_dir / "flotilla.db-wal", 0o644)
    Database(_settings(data_dir)).dispose()
    assert _mode(data_dir) == 0o700
    assert _mode(db_file) == 0o600
    assert _mode(data_dir / "flotilla.db-wal") == 0o600


def test_sqlite_urls() -> None:
    assert sqlite_path("sqlite:////a/b.db") == Path("/a/b.db")
    assert sqlite_path("sqlite:///:memory:") is None
    assert sqlite_path("sqlite://") is None
    assert sqlite_path("postgresql+psycopg://u@h/db") is None
    secure_sqlite("sqlite:///:memory:")  # nothing to do, no error


def test_server_processes_run_with_a_private_umask(tmp_path: Path, open_umask: None) -> None:
    from flotilla import server

    data_dir = tmp_path / "flotilla"
    data_dir.mkdir(mode=0o755)
    os.chmod(data_dir, 0o755)
    server._private(_settings(data_dir))  # what run_server and run_conductor do first
    (data_dir / "later").write_text("x")
    assert os.umask(0o022) == PRIVATE_UMASK
    assert _mode(data_dir) == 0o700
    assert _mode(data_dir / "later") == 0o600
