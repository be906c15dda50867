"""The service controller: for every running cluster whose COE driver balances services
(``ServiceLoadBalancing``: Kubernetes Services of ``type: LoadBalancer``), one pass every
``conductor.service_lb_interval`` seconds.

Why a loop in the conductor rather than a cloud-controller-manager on the masters: the
conductor already holds the cluster's admin credentials and the provider (a controller on
the masters would need provider credentials inside every cluster and a way out of the
isolated cluster network to the Docker Engine), and the same loop serves any provider.

Clusters are synced in a small thread pool, at most one pass per cluster at a time, so one
cluster whose API server does not answer cannot hold up the others. Only clusters that
are up (created, updated, or being updated: a scale changes the balancers' members) are
synced; a cluster being created or deleted is left to its operation. If a delete starts
while a pass runs, the pass's balancers are removed at once after it (the delete's own
listing may have been taken before they existed).

Several conductor processes each run this loop for every cluster: the passes are
idempotent (same names, same specs), so the cost is only duplicate work and duplicate
events; a per-cluster lease would remove it if many conductors ever share a database.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from sqlalchemy import select

from flotilla.certs.keys import SecretBox
from flotilla.conductor.providers import ProviderPool
from flotilla.db import models as m
from flotilla.db.engine import Database
from flotilla.domain import TlsMaterial
from flotilla.drivers.base import ClusterSpec, ServiceLoadBalancing
from flotilla.drivers.registry import CoeRegistry
from flotilla.lifecycle import Status
from flotilla.services import certificates, specs

log = logging.getLogger(__name__)

#: Statuses whose clusters get their service balancers synced.
SYNCED = (
    Status.CREATE_COMPLETE.value,
    Status.UPDATE_COMPLETE.value,
    Status.ROLLBACK_COMPLETE.value,
    Status.UPDATE_IN_PROGRESS.value,
    Status.UPDATE_FAILED.value,
)


@dataclass
class ServiceLbController:
    db: Database
    box: SecretBox
    coes: CoeRegistry
    providers: ProviderPool
    workers: int = 4
    #: cluster uuid -> the driver's memory between passes
    _memo: dict[str, dict[str, object]] = field(default_factory=dict)
    #: cluster uuid -> the last failure logged (logged again only when it changes)
    _failing: dict[str, str] = field(default_factory=dict)
    _running: dict[str, Future[None]] = field(default_factory=dict)
    #: Re-entrant: a pass that ends before ``add_done_callback`` runs its callback at once,
    #: in ``cycle``'s thread, which holds the lock.
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _pool: ThreadPoolExecutor | None = None

    def _clusters(self) -> list[tuple[ClusterSpec, str]]:
        coes = [c for d in self.coes.drivers() if isinstance(d, ServiceLoadBalancing) for c in d.coes]
        out: list[tuple[ClusterSpec, str]] = []
        if not coes:
            return out
        query = (
            select(m.Cluster)
            .join(m.ClusterTemplate, m.ClusterTemplate.uuid == m.Cluster.cluster_template_id)
            .where(m.Cluster.status.in_(SYNCED), m.ClusterTemplate.coe.in_(coes))
        )
        with self.db.reader() as s:
            for c in s.scalars(query):
                try:
                    out.append((specs.build(s, c), c.provider))
                except Exception:  # one broken row (its template gone) must not stop the others
                    log.debug("service balancers: cannot describe cluster %s", c.uuid, exc_info=True)
        return out

    def cycle(self) -> int:
        """Start a pass for every synced cluster that has none running; returns how many."""
        clusters = self._clusters()
        live = {spec.uuid for spec, _ in clusters}
        started = 0
        with self._lock:
            for uuid in [u for u in self._memo if u not in live and u not in self._running]:
                self._memo.pop(uuid, None)
                self._failing.pop(uuid, None)
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="flotilla-svc-lb")
            for spec, provider in clusters:
                if spec.uuid in self._running:
                    continue
                fut = self._pool.submit(self.sync, spec, provider)
                self._running[spec.uuid] = fut
                fut.add_done_callback(lambda _f, u=spec.uuid: self._done(u))  # type: ignore[misc]
                started += 1
        return started

    def _done(self, uuid: str) -> None:
        with self._lock:
            self._running.pop(uuid, None)

    def _tls(self, uuid: str) -> TlsMaterial:
        with self.db.reader() as s:
            return certificates.client_tls(s, self.box, uuid)

    def sync(self, spec: ClusterSpec, provider_name: str) -> None:
        """One pass for one cluster (synchronous; what ``cycle`` runs in its pool)."""
        driver = self.coes.get(spec.coe)
        if not isinstance(driver, ServiceLoadBalancing):
            return
        memo = self._memo.setdefault(spec.uuid, {})
        try:
            provider = self.providers.get(provider_name)
            done = driver.sync_service_load_balancers(spec, provider, self._tls(spec.uuid), memo)
        except Exception as exc:
            message = str(exc) or type(exc).__name__
            if self._failing.get(spec.uuid) != message:
                log.warning("cluster %s: syncing service load balancers failed: %s", spec.uuid, message)
                self._failing[spec.uuid] = message
            return
        if self._failing.pop(spec.uuid, None) is not None:
            log.info("cluster %s: service load balancers in sync again", spec.uuid)
        for line in done:
            log.info("cluster %s: %s", spec.uuid, line)
        if done and not self._still_synced(spec.uuid):
            removed = driver.delete_service_load_balancers(spec, provider)
            self._memo.pop(spec.uuid, None)
            log.info("cluster %s: left the synced states during a pass; removed %s", spec.uuid, removed)

    def _still_synced(self, uuid: str) -> bool:
        with self.db.reader() as s:
            status = s.scalars(select(m.Cluster.status).where(m.Cluster.uuid == uuid)).first()
        return status in SYNCED

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
