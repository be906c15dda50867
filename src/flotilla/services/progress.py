"""A running operation's progress as data: step k of n, its name and detail, stored on
the operation row and rendered into the cluster's ``status_reason`` (what Magnum
clients read); the API, CLI and dashboard read the data, not the text.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import update
from sqlalchemy.orm import Session

from flotilla import lifecycle
from flotilla.db import models as m
from flotilla.services.work_queue import active_for


@dataclass(frozen=True)
class Progress:
    """Where a running operation is: step ``step`` (1-based) of ``total``, and what it does."""

    step: int
    total: int
    name: str
    detail: str | None = None
    #: Why the operation runs when the service started it on its own (auto-healing:
    #: ``"auto-healing: replacing c-node-1 (node missing) with c-node-2"``).
    purpose: str | None = None

    @property
    def label(self) -> str:
        """``"joining workers (2 of 5)"``."""
        return f"{self.name} ({self.detail})" if self.detail else self.name

    @property
    def text(self) -> str:
        """``"3/7 joining workers (2 of 5)"``: how Magnum's ``status_reason`` shows it (after
        the operation's purpose, when it has one)."""
        text = f"{self.step}/{self.total} {self.label}"
        return f"{self.purpose}; {text}" if self.purpose else text


def record_progress(session: Session, op_id: int, cluster_uuid: str, progress: Progress) -> None:
    """Store the step as data on the operation (index, count, name, detail) and render it
    into the cluster's ``status_reason`` (the field Magnum clients read)."""
    session.execute(
        update(m.Operation)
        .where(m.Operation.id == op_id)
        .values(step_index=progress.step - 1, step_count=progress.total, step_name=progress.name,
                detail=progress.detail)
    )  # fmt: skip
    set_progress(session, cluster_uuid, progress.text)


def progress_of(session: Session, cluster_uuid: str) -> Progress | None:
    """The running operation's step, or None (no operation, or none claimed yet)."""
    op = active_for(session, cluster_uuid)
    if op is None or op.state != "running" or not op.step_count:
        return None
    step = min(op.step_index + 1, op.step_count)
    return Progress(step, op.step_count, op.step_name or "", op.detail, purpose_of(op))


def purpose_of(op: m.Operation) -> str | None:
    """Why the service started ``op`` by itself (``params["reason"]``), else None."""
    reason = (op.params or {}).get("reason")
    return str(reason) if reason else None


def set_progress(session: Session, cluster_uuid: str, text: str) -> None:
    """Show ``text`` in ``status_reason`` while an operation runs (see record_progress)."""
    session.execute(
        update(m.Cluster)
        .where(m.Cluster.uuid == cluster_uuid, m.Cluster.status.in_([s.value for s in lifecycle.IN_PROGRESS]))
        .values(status_reason=text)
    )
