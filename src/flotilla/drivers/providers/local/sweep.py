"""Leftovers of the local provider: :func:`sweep` removes everything labelled with a
cluster, :func:`leaks` lists whatever is left (tests and ``flotilla server cleanup`` use it).

Every container, volume and network carries ``flotilla.cluster=<uuid>``; loop devices are
found by their backing files under ``DATA_DIR/volumes/<cluster>``, iptables rules by the
cluster id in their comment.
"""

from __future__ import annotations

import functools
import logging
import shutil
import subprocess
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from flotilla.errors import FlotillaError

from . import firewall, host
from .containers import check_name, label_filter
from .engine import Engine

if TYPE_CHECKING:
    from .provider import LocalProvider

log = logging.getLogger(__name__)


def remove_all(provider: LocalProvider, kind: str, names: Sequence[str]) -> None:
    """Remove objects of one kind; missing ones count as removed. Raises one
    ``FlotillaError`` naming every failure after trying them all."""
    errors: list[str] = []
    for name in names:
        try:
            provider.api.remove(kind, name)
        except FlotillaError as exc:
            errors.append(str(exc))
    if errors:
        raise FlotillaError("; ".join(errors))


def sweep(provider: LocalProvider, cluster_uuid: str) -> list[str]:
    """``LocalProvider.sweep`` (see there)."""
    check_name("cluster uuid", cluster_uuid)
    flt = label_filter(cluster_uuid)
    containers, volumes, networks = (
        provider.api.names(kind, flt) for kind in ("container", "volume", "network")
    )
    removed: list[str] = []
    failed: list[str] = []

    def attempt(label: str, action: Callable[[], object]) -> None:
        try:
            action()
        except (FlotillaError, OSError, subprocess.SubprocessError) as exc:
            failed.append(f"{label}: {exc}")
        else:
            removed.append(label)

    def batch(kind: str, names: Sequence[str]) -> None:
        if not names:
            return
        rm = functools.partial(remove_all, provider, kind)
        try:
            rm(names)  # one call for all; per item only to pinpoint a failure
        except FlotillaError:
            for name in names:
                attempt(f"{kind}:{name}", functools.partial(rm, [name]))
        else:
            removed.extend(f"{kind}:{name}" for name in names)

    batch("container", containers)
    provider.parallel(
        functools.partial(batch, "volume", volumes),
        functools.partial(batch, "network", networks),
    )
    if provider.guard.firewall:
        rules = firewall.rules(cluster_uuid=cluster_uuid)
        if rules:
            attempt(f"iptables:{len(rules)} rule(s)", lambda: firewall.remove(cluster_uuid=cluster_uuid))
    vol_dir = provider.data_dir / "volumes" / cluster_uuid
    for dev, back in host.loops_under(vol_dir):
        attempt(f"loop:{dev} ({back})", functools.partial(host.detach_loop, dev))
    for d in (vol_dir, provider.data_dir / "nodes" / cluster_uuid):
        if d.exists():
            attempt(f"dir:{d}", functools.partial(shutil.rmtree, d))
    if removed:
        log.info("cluster %s: swept %d object(s): %s", cluster_uuid, len(removed), ", ".join(removed))
    if failed:
        raise FlotillaError(f"cluster {cluster_uuid}: sweep could not remove: " + "; ".join(failed))
    return removed


def leaks(engine: Engine, cluster_uuid: str | None = None) -> list[str]:
    """Everything Flotilla left behind for one cluster (or all clusters).

    Containers, networks and volumes labelled ``flotilla.cluster[=uuid]``, loop devices
    whose backing file lives under ``DATA_DIR/volumes[/uuid]``, and non-empty per-cluster
    dirs under ``DATA_DIR/nodes`` and ``DATA_DIR/volumes``. Entries look like
    ``"container:c1-master-0"``; an empty list means clean.
    """
    flt = label_filter(cluster_uuid)
    found = [
        f"{kind}:{name}"
        for kind in ("container", "network", "volume")
        for name in engine.api.names(kind, flt)
    ]
    found += [
        f"iptables:{rule}"
        for rule in firewall.rules(
            engine_id=None if cluster_uuid else engine.engine_id, cluster_uuid=cluster_uuid
        )
    ]
    vol_root = engine.data_dir / "volumes"
    found += [
        f"loop:{dev} ({back})"
        for dev, back in host.loops_under(vol_root / cluster_uuid if cluster_uuid else vol_root)
    ]
    for sub in ("nodes", "volumes"):
        root = engine.data_dir / sub
        dirs = (
            [root / cluster_uuid]
            if cluster_uuid
            else (sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else [])
        )
        for d in dirs:
            if d.is_dir() and any(d.iterdir()):
                found.append(f"dir:{d}")
    return found
