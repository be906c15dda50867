"""Run one claimed operation: plan, run steps from the checkpoint, finish.

Steps are idempotent, so a worker that resumes another's operation simply re-runs
the first unfinished step. Every exit path ends the operation (COMPLETE or FAILED
with a reason that names the step), or leaves it to another worker when the lease
was lost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import select

from flotilla.certs.keys import SecretBox
from flotilla.conductor.images import ImageSync
from flotilla.conductor.providers import ProviderPool
from flotilla.db import models as m
from flotilla.db.engine import Database
from flotilla.db.models import utcnow
from flotilla.domain import NodeInfo, TlsMaterial
from flotilla.drivers.base import ClusterSpec, OpKind, Provider, Step
from flotilla.drivers.registry import CoeRegistry
from flotilla.services import certificates, cluster_reports, operations, specs

log = logging.getLogger(__name__)


class LeaseLost(Exception):
    """Our operation was cancelled or taken over: stop without touching it."""


class Context:
    """The ``StepContext`` handed to driver steps."""

    def __init__(
        self, db: Database, box: SecretBox, spec: ClusterSpec, provider: Provider, runner: OpRunner
    ) -> None:
        self.db = db
        self.box = box
        self.spec = spec
        self.provider = provider
        self._runner = runner
        self._last_progress = 0.0

    def load_images(self, node: NodeInfo, argv: Sequence[str]) -> int:
        """Import the cluster's recorded images (``cluster-image-load``) into ``node`` now."""
        images = self._runner.images
        return images.load_node(self.spec.uuid, self.provider, node, argv, at_boot=True) if images else 0

    def progress(self, detail: str) -> None:
        """Show ``detail``; raises LeaseLost if the operation was cancelled meanwhile."""
        if self._runner.lost:
            raise LeaseLost
        now = time.monotonic()
        if now - self._last_progress < 0.2:
            return
        self._last_progress = now
        self._runner.show(detail)

    def server_tls(
        self, cn: str, dns_names: Sequence[str], ips: Sequence[str], *, ca: str = certificates.CLUSTER
    ) -> TlsMaterial:
        self._ensure_kind(ca)
        with self.db.reader() as s:
            return certificates.server_tls(s, self.box, self.spec.uuid, cn, dns_names, ips, ca)

    def _ensure_kind(self, ca: str) -> None:
        if ca != certificates.CLUSTER:
            with self.db.session() as s:
                certificates.ensure_kind(s, self.box, self.spec.uuid, ca)

    def trust_bundle(self, ca: str = certificates.CLUSTER) -> str:
        self._ensure_kind(ca)
        with self.db.reader() as s:
            return certificates.trust_bundle(s, self.spec.uuid, ca)

    def retire_previous_ca(self) -> None:
        with self.db.session() as s:
            certificates.retire_previous(s, self.spec.uuid)

    def client_tls(self) -> TlsMaterial:
        with self.db.reader() as s:
            return certificates.client_tls(s, self.box, self.spec.uuid)

    def client_cert(
        self, cn: str, organization: str | None = None, *, ca: str = certificates.CLUSTER
    ) -> TlsMaterial:
        self._ensure_kind(ca)
        with self.db.reader() as s:
            return certificates.client_cert(s, self.box, self.spec.uuid, cn, organization, ca)

    def derived_key(self, purpose: str) -> str:
        with self.db.reader() as s:
            return certificates.derived_key(s, self.box, self.spec.uuid, purpose)

    def save_outputs(
        self,
        *,
        api_address: str | None = None,
        master_addresses: Sequence[str] | None = None,
        node_addresses: Sequence[str] | None = None,
        coe_version: str | None = None,
        container_version: str | None = None,
    ) -> None:
        out = cluster_reports.Outputs(
            api_address=api_address, master_addresses=master_addresses, node_addresses=node_addresses,
            coe_version=coe_version, container_version=container_version,
        )  # fmt: skip
        with self.db.session() as s:
            cluster_reports.record_outputs(s, self.spec.uuid, out)


class OpRunner:
    """Runs one operation for one worker."""

    def __init__(
        self,
        db: Database,
        box: SecretBox,
        coes: CoeRegistry,
        providers: ProviderPool,
        owner: str,
        lease: float,
        images: ImageSync | None = None,
    ) -> None:
        self.db, self.box, self.coes, self.providers = db, box, coes, providers
        self.owner, self.lease = owner, lease
        #: Loads the cluster's recorded images into nodes a step boots (None: not available).
        self.images = images
        self.op: m.Operation | None = None
        self._lost = threading.Event()
        self._done = threading.Event()
        self._step: operations.Progress | None = None

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def abandon(self) -> None:
        """Stop at the next step boundary (the process is shutting down)."""
        self._lost.set()

    def show(self, detail: str) -> None:
        assert self.op is not None and self._step is not None
        with self.db.session() as s:
            operations.record_progress(
                s, self.op.id, self.op.cluster_id, replace(self._step, detail=detail or None)
            )

    def _renew_loop(self) -> None:
        assert self.op is not None
        while not self._done.wait(min(self.lease / 3, 2.0)):
            try:
                with self.db.session() as s:
                    if not operations.renew(s, self.op.id, self.owner, self.lease):
                        self._lost.set()
                        return
            except Exception:
                log.exception("lease renewal failed for operation %s", self.op.uuid)

    def run(self, op: m.Operation) -> None:
        self.op = op
        renewer = threading.Thread(target=self._renew_loop, name=f"lease-{op.uuid[:8]}", daemon=True)
        renewer.start()
        try:
            self._run(op)
        except LeaseLost:
            log.info(
                "cluster %s: %s operation %s stopped (cancelled or taken over)",
                op.cluster_id,
                op.kind,
                op.uuid,
            )
            with self.db.session() as s:
                operations.release(s, op.id, self.owner)
        finally:
            self._done.set()
            renewer.join(timeout=5)

    def _fail(self, op: m.Operation, reason: str) -> None:
        purpose = operations.purpose_of(op)
        if purpose:  # an auto-healing that failed says what it was replacing
            reason = f"{purpose}; {reason}"
        log.warning("cluster %s: %s failed: %s", op.cluster_id, op.kind, reason)
        with self.db.session() as s:
            operations.finish(s, op, self.owner, failed_reason=reason)

    def _run(self, op: m.Operation) -> None:
        try:
            steps, spec, provider = self._plan(op)
        except Exception as exc:
            self._fail(op, f"Planning the {op.kind} failed: {exc}")
            return
        total = len(steps)
        ctx = Context(self.db, self.box, spec, provider, self)
        for index in range(op.step_index, total):
            step = steps[index]
            if self._lost.is_set():
                raise LeaseLost
            if op.deadline is not None and utcnow() > op.deadline:
                self._fail(op, f"Timed out at step {index + 1}/{total} ({step.name}).")
                return
            self._step = operations.Progress(index + 1, total, step.name, purpose=operations.purpose_of(op))
            # One transaction per step boundary: "steps before this one are done, this one runs".
            with self.db.session() as s:
                if not operations.checkpoint(
                    s, op.id, self.owner, step_index=index, step_count=total, step_name=step.name
                ):
                    raise LeaseLost
                operations.set_progress(s, op.cluster_id, self._step.text)
            started = time.monotonic()
            try:
                step.run(ctx)
            except LeaseLost:
                raise
            except Exception as exc:
                log.debug("step failed", exc_info=True)
                self._fail(op, f"Step {index + 1}/{total} ({step.name}) failed: {exc}")
                return
            log.info(
                "cluster %s: step %s done in %.2fs", op.cluster_id, step.name, time.monotonic() - started
            )
        with self.db.session() as s:
            status = operations.finish(s, op, self.owner)
        log.info("cluster %s: %s operation finished: %s", op.cluster_id, op.kind, status)

    def _plan(self, op: m.Operation) -> tuple[list[Step], ClusterSpec, Provider]:
        with self.db.reader() as s:
            cluster = s.scalars(select(m.Cluster).where(m.Cluster.uuid == op.cluster_id)).one()
            spec = specs.build(s, cluster, op)
            provider_name = cluster.provider
        driver = self.coes.get(spec.coe)
        if driver is None:
            raise RuntimeError(f"no enabled COE driver for {spec.coe!r}")
        provider = self.providers.get(provider_name)
        kind: OpKind = op.kind  # type: ignore[assignment]
        steps = list(driver.plan(kind, spec))
        generation = int((op.params or {}).get("ca_generation", 1))
        # Every cluster gets a CA (cheap): TLS daemons, the registry and CSR signing use it.
        if kind in ("create", "rotate_ca"):
            steps.insert(0, Step("generating certificates", _ensure_ca(self.db, self.box, spec, generation)))
        if kind == "rotate_ca":
            # The replaced CA stays trusted only while the driver's steps run (a phased
            # rotation retires it itself, before narrowing the nodes' trust).
            steps.append(Step("retiring the old CA", lambda ctx: ctx.retire_previous_ca()))
        return steps, spec, provider


def _ensure_ca(db: Database, box: SecretBox, spec: ClusterSpec, generation: int) -> Any:
    def run(_ctx: Any) -> None:
        with db.session() as s:
            certificates.ensure_ca(s, box, spec.uuid, spec.name, generation=generation)

    return run
