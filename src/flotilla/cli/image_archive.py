"""Make an image archive (the ``docker save`` format) from a root filesystem tarball.

Both ``docker load`` and containerd's ``ctr images import`` read this format, so one
archive serves every COE. One layer, no history beyond its creation.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import tarfile

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}


def is_docker_archive(data: bytes) -> bool:
    """Whether ``data`` is a tar holding ``manifest.json`` (``docker save``) or ``index.json`` (OCI)."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            names = {m.name.lstrip("./") for m in tar.getmembers()}
    except tarfile.TarError:
        return False
    return "manifest.json" in names or "index.json" in names


def from_rootfs(rootfs: bytes, tag: str, *, cmd: list[str] | None = None) -> bytes:
    """A one-layer image named ``tag`` whose filesystem is the tarball ``rootfs``."""
    if ":" in tag.rsplit("/", 1)[-1]:
        repo, _, version = tag.rpartition(":")
    else:
        repo, version = tag, "latest"
    name = f"{repo}:{version}"
    layer_id = hashlib.sha256(rootfs).hexdigest()
    config: dict[str, object] = {
        "architecture": _ARCH.get(platform.machine(), platform.machine()),
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            **({"Cmd": cmd} if cmd else {}),
        },
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_id}"]},
        "history": [{"created_by": "flotilla cluster-image-load"}],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = f"{hashlib.sha256(config_bytes).hexdigest()}.json"
    manifest = [{"Config": config_name, "RepoTags": [name], "Layers": [f"{layer_id}/layer.tar"]}]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        _add(tar, f"{layer_id}/layer.tar", rootfs)
        _add(tar, config_name, config_bytes)
        _add(tar, "manifest.json", json.dumps(manifest).encode())
        _add(tar, "repositories", json.dumps({repo: {version: layer_id}}).encode())
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))
