"""Image sync: import each cluster's recorded images (``services.cluster_images``) into
every running node that lacks them, with the COE driver's ``image_load_argv()``.

Reconciles rather than reacts: the same pass serves a fresh ``cluster-image-load`` and
nodes added later by a scale-out or a repair. Clusters are synced only while settled
(``*_COMPLETE``), so a node is not raced while its operation still boots it. Records of
deleted clusters are removed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import select

from flotilla.conductor.providers import ProviderPool
from flotilla.db import models as m
from flotilla.db.engine import Database
from flotilla.domain import NodeInfo
from flotilla.drivers.base import Provider
from flotilla.drivers.registry import CoeRegistry
from flotilla.services import cluster_images

log = logging.getLogger(__name__)

#: Seconds one import may take on one node (a large archive on a busy machine).
IMPORT_TIMEOUT = 600.0


class ImageSync:
    def __init__(self, data_dir: Path, db: Database, coes: CoeRegistry, providers: ProviderPool) -> None:
        self.data_dir, self.db, self.coes, self.providers = Path(data_dir), db, coes, providers

    def cycle(self) -> int:
        """One pass over every cluster with images; returns how many imports succeeded."""
        done = 0
        for uuid in list(cluster_images.clusters(self.data_dir)):
            try:
                done += self._sync(uuid)
            except Exception:
                log.exception("cluster %s: image sync failed", uuid)
        return done

    def _sync(self, uuid: str) -> int:
        with self.db.reader() as s:
            row = s.scalars(select(m.Cluster).where(m.Cluster.uuid == uuid)).first()
            if row is None:
                cluster_images.forget_cluster(self.data_dir, uuid)
                return 0
            status, provider_name = row.status, row.provider
            coe = s.scalars(
                select(m.ClusterTemplate.coe).where(m.ClusterTemplate.uuid == row.cluster_template_id)
            ).first()
        if not status.endswith("_COMPLETE") or status == "DELETE_COMPLETE":
            return 0
        driver = self.coes.get(coe or "")
        argv = driver.image_load_argv() if driver is not None else None
        wanted = cluster_images.images(self.data_dir, uuid)
        if argv is None or not wanted:
            return 0
        provider = self.providers.get(provider_name)
        # masters and workers run the users' containers; a load balancer or registry node does not
        running = [
            n for n in provider.list_nodes(uuid) if n.state == "running" and n.role in ("master", "worker")
        ]
        cluster_images.set_nodes(self.data_dir, uuid, [n.name for n in running])
        done = 0
        for node in running:
            done += self.load_node(uuid, provider, node, argv)
        return done

    def load_node(self, uuid: str, provider: Provider, node: NodeInfo, argv: Sequence[str], *,
                  at_boot: bool = False) -> int:  # fmt: skip
        """Import every recorded image of the cluster that ``node`` lacks; returns how many.

        Also what a step calls while it boots a node added later (``at_boot``), so the node
        has the images before it is reported ready, not one sync cycle after the operation."""
        done = 0
        when = " at its boot" if at_boot else ""
        for img in cluster_images.images(self.data_dir, uuid):
            if cluster_images.is_loaded(self.data_dir, uuid, img.sha256, node.name, node.provider_id):
                continue
            if (
                cluster_images.attempts(self.data_dir, uuid, img.sha256, node.name)
                >= cluster_images.MAX_ATTEMPTS
            ):
                continue
            res = provider.exec(node, argv, stdin=img.path.read_bytes(), timeout=IMPORT_TIMEOUT)
            if res.returncode == 0:
                cluster_images.mark_loaded(self.data_dir, uuid, img.sha256, node.name, node.provider_id)
                log.info("cluster %s: image %s loaded into %s%s", uuid, img.name, node.name, when)
                done += 1
            else:
                reason = (res.stderr or res.stdout).strip().splitlines()[-1:] or [f"exit {res.returncode}"]
                cluster_images.mark_failed(self.data_dir, uuid, img.sha256, node.name, reason[0])
                log.warning("cluster %s: loading %s into %s%s failed: %s", uuid, img.name, node.name, when,
                            reason[0])  # fmt: skip
        return done
