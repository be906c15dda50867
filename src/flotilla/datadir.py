"""Where the data dir is by default, and that it is private: it holds the database, the
cluster CAs' keys, tokens in ``clouds.yaml`` and node volume images (which carry the
nodes' private keys).

Directories are 0700 and files 0600, whatever the umask; the server processes also
run with umask 0o077 so a file somebody adds later stays private too.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/flotilla`` (``~/.local/share/flotilla``). Here, not in
    :mod:`flotilla.settings`: the CLI needs it without importing pydantic (a fifth of a
    second of every command)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "flotilla"


DIR_MODE = 0o700
FILE_MODE = 0o600
#: What the server processes create files with.
PRIVATE_UMASK = 0o077


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) and make ``path`` itself 0700. Returns it.

    Only the leaf is tightened: parents may be shared directories (``~/.local/share``).
    """
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    if path.stat().st_mode & 0o777 != DIR_MODE:
        os.chmod(path, DIR_MODE)
    return path


def private_file(path: Path) -> None:
    """Make an existing file 0600 (a missing one is ignored)."""
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_mode & 0o777 != FILE_MODE:
            os.chmod(path, FILE_MODE)


def touch_private(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if missing; make it 0600 if present."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    private_file(path)


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///PATH`` URL (None for memory databases and other engines)."""
    if not url.startswith("sqlite"):
        return None
    _, sep, rest = url.partition(":///")
    path = rest.split("?", 1)[0]
    if not sep or not path or path == ":memory:":
        return None
    return Path(path)


def secure_sqlite(url: str) -> None:
    """Create the SQLite file 0600 before SQLite does (SQLite gives its -wal and -shm
    files the database file's mode), and tighten an existing one and its companions."""
    path = sqlite_path(url)
    if path is None:
        return
    touch_private(path)
    for suffix in ("-wal", "-shm", "-journal"):
        private_file(path.with_name(path.name + suffix))
