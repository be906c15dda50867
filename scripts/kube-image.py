#!/usr/bin/env python3
"""Write a single-binary container image archive FROM scratch, without docker or a registry.

    kube-image.py OUT.tar NAME:TAG BINARY [--path /pause] [--arg ...]

The archive is an OCI image layout (oci-layout, index.json, blobs/sha256/...) that also carries
a Docker `manifest.json`, so both `ctr -n k8s.io images import OUT.tar` and `docker load` accept
it. The image has one layer holding BINARY at --path (default /<basename>), entrypoint that path
plus any --arg. Its name is the full NAME:TAG (e.g. flotilla.local/pause:3.10): containerd would
rewrite a short name to docker.io. Output is reproducible: fixed mtimes, owners and order.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

MTIME = 0  # reproducible archives: same inputs, same digests


def _tar_member(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    tar.addfile(info, io.BytesIO(data))


def _tar_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = MTIME
    tar.addfile(info)


def _layer(binary: bytes, path: str) -> tuple[bytes, str]:
    """(gzipped layer, diff_id) for a layer holding `binary` at `path`."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        parts = path.strip("/").split("/")
        for i in range(1, len(parts)):
            _tar_dir(tar, "/".join(parts[:i]) + "/")
        _tar_member(tar, "/".join(parts), binary, 0o755)
    data = raw.getvalue()
    diff_id = "sha256:" + hashlib.sha256(data).hexdigest()
    return gzip.compress(data, mtime=MTIME), diff_id


def build(out: Path, ref: str, binary: Path, path: str, args: list[str]) -> str:
    name, _, tag = ref.rpartition(":")
    if not name or "/" in tag or "." not in name.split("/")[0]:
        raise SystemExit(f"image name must be fully qualified NAME:TAG with a registry host, got {ref!r}")
    layer, diff_id = _layer(binary.read_bytes(), path)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": [path, *args], "WorkingDir": "/", "Env": ["PATH=/"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": f"flotilla scripts/kube-image.py {os.path.basename(binary)}"}],
    }
    config_blob = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    blobs: dict[str, bytes] = {}

    def blob(data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return digest

    config_digest = blob(config_blob)
    layer_digest = blob(layer)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": f"sha256:{config_digest}",
            "size": len(config_blob),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": f"sha256:{layer_digest}",
                "size": len(layer),
            }
        ],
    }
    manifest_blob = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    manifest_digest = blob(manifest_blob)
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": f"sha256:{manifest_digest}",
                "size": len(manifest_blob),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": ref,
                    "org.opencontainers.image.ref.name": tag,
                },
            }
        ],
    }
    docker_manifest = [
        {
            "Config": f"blobs/sha256/{config_digest}",
            "RepoTags": [ref],
            "Layers": [f"blobs/sha256/{layer_digest}"],
        }
    ]
    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _tar_dir(tar, "blobs/")
        _tar_dir(tar, "blobs/sha256/")
        for digest in sorted(blobs):
            _tar_member(tar, f"blobs/sha256/{digest}", blobs[digest], 0o644)
        _tar_member(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}', 0o644)
        _tar_member(tar, "index.json", json.dumps(index, sort_keys=True).encode(), 0o644)
        _tar_member(tar, "manifest.json", json.dumps(docker_manifest).encode(), 0o644)
    tmp.replace(out)
    return f"sha256:{manifest_digest}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("ref", help="fully qualified NAME:TAG, e.g. flotilla.local/pause:3.10")
    parser.add_argument("binary", type=Path)
    parser.add_argument("--path", help="where the binary goes in the image (default /<basename>)")
    parser.add_argument("--arg", action="append", default=[], help="extra entrypoint argument")
    ns = parser.parse_args()
    path = ns.path or "/" + ns.binary.name
    digest = build(ns.out, ns.ref, ns.binary, path, ns.arg)
    print(f"{ns.ref} {digest} -> {ns.out}")


if __name__ == "__main__":
    main()
