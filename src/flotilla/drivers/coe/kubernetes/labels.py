"""The Kubernetes COE's constants, the guide's flannel labels, and the built version.

Defaults follow the user guide where it names one (``flannel_network_cidr``
10.100.0.0/16, ``flannel_network_subnetlen`` 24). The guide's default
``flannel_backend`` is udp; here it is **vxlan**, the backend measured to carry pod
traffic between node containers across Docker's bridge rules (see
``shared/notes/kubernetes-on-local-nodes.md``); udp and host-gw stay selectable.

Only one Kubernetes version can run: the one ``scripts/build-kube.sh`` built into
``$FLOTILLA_KUBE_CACHE/current`` (default ``/var/cache/flotilla/kube/current``), whose
``VERSIONS`` file (``key=value`` lines) names it as ``kubernetes=v1.37.x``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

FLANNEL_BACKENDS: tuple[str, ...] = ("udp", "vxlan", "host-gw")
DEFAULT_FLANNEL_BACKEND = "vxlan"
DEFAULT_FLANNEL_CIDR = "10.100.0.0/16"
DEFAULT_SUBNETLEN = 24
DEFAULT_SERVICE_CIDR = "10.254.0.0/16"
#: The cluster DNS service's ClusterIP (the tenth address of the service CIDR, as kubeadm picks).
DNS_SERVICE_IP = "10.254.0.10"
CLUSTER_DOMAIN = "cluster.local"

#: Magnum's label naming the Kubernetes version (e.g. ``v1.37.2``). Magnum has no
#: ``kube_version`` label (that is a Heat parameter fed from ``kube_tag``), so only this one counts.
VERSION_LABEL = "kube_tag"

#: Environment variable (and default) for the build cache ``scripts/build-kube.sh`` writes.
CACHE_ENV = "FLOTILLA_KUBE_CACHE"
DEFAULT_CACHE = "/var/cache/flotilla/kube"
BUILD_FIX = "run scripts/build-kube.sh (or make setup), which builds them from Go modules"


@dataclass(frozen=True)
class FlannelSettings:
    backend: str
    network_cidr: str
    subnetlen: int


def flannel_settings(labels: Mapping[str, str]) -> FlannelSettings:
    """The flannel configuration for ``labels``, defaults filled in.

    Assumes the labels passed ``template.validate_template`` (values are not re-checked).
    """
    backend = str(labels.get("flannel_backend") or DEFAULT_FLANNEL_BACKEND)
    cidr = str(labels.get("flannel_network_cidr") or DEFAULT_FLANNEL_CIDR)
    sublen = labels.get("flannel_network_subnetlen")
    return FlannelSettings(backend, cidr, int(str(sublen)) if sublen not in (None, "") else DEFAULT_SUBNETLEN)


def cache_dir() -> Path:
    """The kube build cache root (``$FLOTILLA_KUBE_CACHE``, else ``/var/cache/flotilla/kube``)."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


@dataclass(frozen=True)
class KubeBuild:
    """What ``current/VERSIONS`` says: ``version`` is None when nothing usable is built,
    and then ``reason`` says why and how to fix it."""

    version: str | None
    versions: Mapping[str, str]
    reason: str
    #: The build read (``CACHE/current``): ``bin/``, ``images/``, ``VERSIONS``.
    directory: Path

    @property
    def has_binaries(self) -> bool:
        """The build's ``bin/kube`` exists (a stand-in cache holding only VERSIONS has none)."""
        return (self.directory / "bin" / "kube").is_file()


def read_build(cache: Path | None = None) -> KubeBuild:
    """Read ``CACHE/current/VERSIONS``. Never raises: a missing or bad file is a reason."""
    root = cache if cache is not None else cache_dir()
    current = (root / "current").resolve()  # `current` may move under us during a rebuild
    path = current / "VERSIONS"
    try:
        text = path.read_text()
    except FileNotFoundError:
        why = f"the Kubernetes binaries are not built ({path} does not exist)"
        if shutil.which("go") is None:
            why += (
                "; no Go toolchain is on PATH here, and building them needs Go 1.26 and the Go module proxy"
            )
        return KubeBuild(None, {}, f"{why}: {BUILD_FIX}.", current)
    except OSError as exc:
        return KubeBuild(None, {}, f"cannot read {path} ({exc.strerror}): {BUILD_FIX}.", current)
    versions: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.lstrip().startswith("#"):
            versions[key.strip()] = value.strip()
    version = versions.get("kubernetes") or None
    if version is None:
        return KubeBuild(
            None,
            versions,
            f"{path} names no kubernetes= version (an unfinished build?): {BUILD_FIX}.",
            current,
        )
    return KubeBuild(version, versions, "", current)


def built_kube_version(cache: Path | None = None) -> str | None:
    """The built Kubernetes version (``v1.37.x``), or None when not built (see :func:`read_build`)."""
    return read_build(cache).version


def same_version(label: str, built: str) -> bool:
    """``kube_tag`` matches the build, with or without the leading ``v``."""
    return label.strip().removeprefix("v") == built.strip().removeprefix("v")
