"""Images loaded into a cluster's nodes (``cluster-image-load``): desired state as files.

Nodes cannot pull (no registry is reachable), so a user uploads an image archive (the
``docker save`` format, which ``docker load`` and containerd's ``ctr images import``
both read) and the conductor imports it into every node of the cluster, with the COE
driver's ``image_load_argv()`` run on the node through the provider, reading the
archive on stdin. The images stay recorded for the cluster, so nodes added later get
them too (the conductor's image sync runs until every node has every image).

Layout under ``DATA_DIR/cluster-images/<cluster uuid>/``::

    <sha256>.tar            the archive            (written once by the API)
    <sha256>.json           {"name", "size", "created_at"}
    loaded/<sha256>/<node>  imported into that node (by the conductor); holds the node's
                            provider id, so a node made again under the same name loads again
    failed/<sha256>/<node>  the last error, and how many attempts failed
    nodes.json              the nodes the conductor last saw running (what "every node" means)

Files rather than rows: archives are large, the local provider's nodes live on this
host anyway, and each file has one writer (no migration, no locking).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from flotilla.errors import Invalid

#: Largest archive accepted (bytes): images for nodes that cannot pull, not a registry.
MAX_ARCHIVE = 2 * 1024**3
#: Attempts per node and image before the sync stops retrying (the failure stays visible).
MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class StoredImage:
    sha256: str
    name: str
    size: int
    path: Path


def _root(data_dir: Path, cluster_uuid: str) -> Path:
    return Path(data_dir) / "cluster-images" / cluster_uuid


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def store(data_dir: Path, cluster_uuid: str, data: bytes, name: str) -> StoredImage:
    """Record ``data`` (an image archive) for the cluster; idempotent for the same bytes.

    Raises Invalid for an empty, oversized or non-tar body.
    """
    if not data:
        raise Invalid("The image archive is empty: send a `docker save` tarball as the request body.")
    if len(data) > MAX_ARCHIVE:
        raise Invalid(f"The image archive is {len(data)} bytes; at most {MAX_ARCHIVE} are accepted.")
    if len(data) < 512 or data[257:262] != b"ustar":
        raise Invalid("The body is not a tar archive: send a `docker save` (or OCI layout) tarball.")
    sha = hashlib.sha256(data).hexdigest()
    root = _root(data_dir, cluster_uuid)
    tar = root / f"{sha}.tar"
    if not tar.exists():
        _atomic_write(tar, data)
    meta = root / f"{sha}.json"
    if not meta.exists():
        doc = {"name": name or sha[:12], "size": len(data), "created_at": time.time()}
        _atomic_write(meta, json.dumps(doc).encode())
    # a new upload of the same archive retries nodes where it failed
    shutil.rmtree(root / "failed" / sha, ignore_errors=True)
    return StoredImage(sha, json.loads(meta.read_text())["name"], len(data), tar)


def images(data_dir: Path, cluster_uuid: str) -> list[StoredImage]:
    """The cluster's images, oldest first."""
    root = _root(data_dir, cluster_uuid)
    found: list[tuple[float, StoredImage]] = []
    for meta in root.glob("*.json") if root.is_dir() else ():
        try:
            doc = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue
        tar = meta.with_suffix(".tar")
        if tar.is_file():
            found.append(
                (
                    float(doc.get("created_at", 0)),
                    StoredImage(meta.stem, str(doc["name"]), int(doc["size"]), tar),
                )
            )
    return [img for _, img in sorted(found, key=lambda pair: pair[0])]


def node_state(data_dir: Path, cluster_uuid: str, sha: str, node: str) -> str:
    """``loaded``; ``pending`` (maybe ``pending (attempt N failed: …)``); or, once the
    conductor has given up, ``failed: <reason>``."""
    root = _root(data_dir, cluster_uuid)
    if (root / "loaded" / sha / node).exists():
        return "loaded"
    failed = root / "failed" / sha / node
    try:
        doc = json.loads(failed.read_text())
    except (OSError, ValueError):
        return "pending"
    if int(doc.get("attempts", 0)) >= MAX_ATTEMPTS:
        return f"failed: {doc['error']}"
    return f"pending (attempt {doc.get('attempts')} failed: {doc['error']})"


def attempts(data_dir: Path, cluster_uuid: str, sha: str, node: str) -> int:
    failed = _root(data_dir, cluster_uuid) / "failed" / sha / node
    try:
        return int(json.loads(failed.read_text())["attempts"])
    except (OSError, ValueError, KeyError):
        return 0


def is_loaded(data_dir: Path, cluster_uuid: str, sha: str, node: str, provider_id: str) -> bool:
    try:
        return (_root(data_dir, cluster_uuid) / "loaded" / sha / node).read_text() == provider_id
    except OSError:
        return False


def mark_loaded(data_dir: Path, cluster_uuid: str, sha: str, node: str, provider_id: str) -> None:
    root = _root(data_dir, cluster_uuid)
    _atomic_write(root / "loaded" / sha / node, provider_id.encode())
    (root / "failed" / sha / node).unlink(missing_ok=True)


def mark_failed(data_dir: Path, cluster_uuid: str, sha: str, node: str, error: str) -> None:
    n = attempts(data_dir, cluster_uuid, sha, node) + 1
    doc = {"error": error[:500], "attempts": n}
    _atomic_write(_root(data_dir, cluster_uuid) / "failed" / sha / node, json.dumps(doc).encode())


def set_nodes(data_dir: Path, cluster_uuid: str, names: list[str]) -> None:
    """Record the cluster's running nodes (by the conductor's image sync)."""
    path = _root(data_dir, cluster_uuid) / "nodes.json"
    data = json.dumps(sorted(names)).encode()
    try:
        if path.read_bytes() == data:
            return
    except OSError:
        pass
    _atomic_write(path, data)


def seen_nodes(data_dir: Path, cluster_uuid: str) -> list[str] | None:
    """The nodes the conductor last saw running; None before its first look."""
    try:
        names = json.loads((_root(data_dir, cluster_uuid) / "nodes.json").read_text())
    except (OSError, ValueError):
        return None
    return [str(n) for n in names] if isinstance(names, list) else None


def clusters(data_dir: Path) -> Iterator[str]:
    base = Path(data_dir) / "cluster-images"
    if base.is_dir():
        yield from (p.name for p in base.iterdir() if p.is_dir())


def forget_cluster(data_dir: Path, cluster_uuid: str) -> None:
    shutil.rmtree(_root(data_dir, cluster_uuid), ignore_errors=True)
