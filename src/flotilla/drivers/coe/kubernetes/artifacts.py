"""Where the Kubernetes binaries come from: the build cache on this host
(``scripts/build-kube.sh`` writes ``$FLOTILLA_KUBE_CACHE/current/{bin,images,VERSIONS}``;
``labels.read_build`` is the one reader of it) and, inside a node, the copy
``flotilla image-build`` puts in the node image."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

from flotilla.drivers.base import ImageExtras
from flotilla.errors import Invalid

#: Where the node image holds the cache's ``bin/``, ``images/`` and ``VERSIONS``.
NODE_DIR = "/opt/flotilla/kube"
#: Image label naming the Kubernetes version the node image carries.
IMAGE_LABEL = "flotilla.kube.version"
BUILD_HINT = "build them with scripts/build-kube.sh (part of `make setup`), then rebuild the node image"


def image_name(tar: Path) -> str | None:
    """The name an image archive imports as (``ctr images import``): docker-save's
    ``manifest.json`` RepoTags, or the OCI ``index.json`` name annotations."""
    try:
        with tarfile.open(tar) as t:
            names = t.getnames()
            if "manifest.json" in names:
                member = t.extractfile("manifest.json")
                manifest = json.load(member) if member else []
                tags = [tag for entry in manifest for tag in entry.get("RepoTags") or []]
                if tags:
                    return str(tags[0])
            if "index.json" in names:
                member = t.extractfile("index.json")
                index = json.load(member) if member else {}
                for m in index.get("manifests") or []:
                    ann = m.get("annotations") or {}
                    name = ann.get("io.containerd.image.name") or ann.get("org.opencontainers.image.ref.name")
                    if name and ("/" in name or ":" in name):
                        return str(name)
    except (OSError, tarfile.TarError, ValueError, KeyError):
        return None
    return None


def node_image_extras(required: bool) -> ImageExtras | None:
    """The Kubernetes binaries built on this host, for node images (``flotilla image-build
    --kubernetes auto|yes|no``; entry point ``flotilla.node_image_extras``): copied to
    :data:`NODE_DIR`, their version in the :data:`IMAGE_LABEL` label. None when they are not
    built; raises Invalid then when ``required``."""
    from flotilla.drivers.coe.kubernetes import labels

    build = labels.read_build()
    if build.version is None or not build.has_binaries:
        if required:
            raise Invalid(f"no Kubernetes binaries in {build.directory}: {BUILD_HINT}")
        return None
    return ImageExtras(
        description=f"Kubernetes {build.version} from {build.directory} at {NODE_DIR}",
        dirs={NODE_DIR: build.directory},
        labels={IMAGE_LABEL: build.version},
    )
