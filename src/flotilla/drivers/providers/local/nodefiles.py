"""Files of the local provider's nodes, kept on this host.

``NodeSpec.files`` (and the SSH key) are written to ``DATA_DIR/nodes/<cluster>/<node>/files/``
and bind-mounted read-only at their paths (paths under ``/usr``, ``/proc``, ``/sys``,
``/dev`` are refused); rewriting one in place changes what the running node sees. Every
node also gets ``DATA_DIR/nodes/resolv.conf`` (``nameserver 127.0.0.1``), so image pulls
for unknown names fail at once instead of hanging on the internal network's DNS.
"""

from __future__ import annotations

import contextlib
import io
import tarfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from flotilla.domain import NodeInfo, NodeSpec
from flotilla.errors import FlotillaError

from . import host
from .containers import file_mode, validate_file_path

if TYPE_CHECKING:
    from .provider import LocalProvider


def node_dir(data_dir: Path, cluster_uuid: str, name: str) -> Path:
    """The node's own directory on this host (its files live under ``files/``)."""
    return data_dir / "nodes" / cluster_uuid / name


def node_file(data_dir: Path, cluster_uuid: str, name: str, path: str) -> Path:
    """Where a file the node was created with lives on this host (it is bind-mounted)."""
    return node_dir(data_dir, cluster_uuid, name) / "files" / path.lstrip("/")


def resolv_conf(data_dir: Path) -> Path:
    """The ``resolv.conf`` every node mounts; written (atomically) when missing or changed."""
    path = data_dir / "nodes" / "resolv.conf"
    content = "nameserver 127.0.0.1\n"
    if not path.exists() or path.read_text() != content:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".resolv.conf.{threading.get_ident()}")
        tmp.write_text(content)
        tmp.chmod(0o644)
        tmp.replace(path)
    return path


def write_files(data_dir: Path, spec: NodeSpec, hostroot: bool) -> list[tuple[Path, str]]:
    """Write spec.files (and the SSH key) under the node dir; return (host path, node path)."""
    files: dict[str, bytes] = dict(spec.files)
    if spec.ssh_public_key:
        key = spec.ssh_public_key.strip().encode() + b"\n"
        files.setdefault("/root/.ssh/authorized_keys", key)
        if spec.login_user and spec.login_user != "root":
            files.setdefault(f"/home/{spec.login_user}/.ssh/authorized_keys", key)
    base = node_dir(data_dir, spec.cluster_uuid, spec.name) / "files"
    host.private_dirs(base, levels=4)  # files, <node>, <cluster>, nodes
    mounts: list[tuple[Path, str]] = []
    for path, data in sorted(files.items()):
        rel = validate_file_path(spec.name, path, hostroot).relative_to("/")
        on_host = base / rel
        on_host.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Rewrite in place (same inode) so a running node's bind mount sees the new content.
        with on_host.open("wb") as f:
            f.write(data)
        on_host.chmod(file_mode(path))
        mounts.append((on_host, path))
    return mounts


def put_files(provider: LocalProvider, node: NodeInfo, files: Mapping[str, bytes]) -> None:
    """``LocalProvider.put_files`` (see there)."""
    if not files:
        return
    base = node_dir(provider.data_dir, node.cluster_uuid, node.name) / "files"
    rest: dict[str, bytes] = {}
    for path, data in files.items():
        rel = validate_file_path(node.name, path, hostroot=False).relative_to("/")
        on_host = base / rel
        if on_host.is_file():
            with on_host.open("wb") as f:
                f.write(data)
        else:
            rest[path] = data
    if not rest:
        return
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, data in sorted(rest.items()):
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size = len(data)
            info.mode = file_mode(path)
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
    result = provider.exec(node, ["tar", "-x", "-f", "-", "-C", "/", "--no-same-owner"], stdin=buf.getvalue())
    if not result.ok:
        raise FlotillaError(f"node {node.name}: writing {len(rest)} file(s) failed: {result.stderr.strip()}")


def remove_empty_cluster_dirs(data_dir: Path, cluster_uuid: str) -> None:
    """Drop the cluster's node and volume dirs once nothing is left in them."""
    for d in (data_dir / "nodes" / cluster_uuid, data_dir / "volumes" / cluster_uuid):
        with contextlib.suppress(OSError):
            d.rmdir()
