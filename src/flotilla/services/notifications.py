"""CADF notifications about clusters (reference §12, the guide's Notification section).

:func:`emit` never sends anything: it adds ``notifications_outbox`` rows to the
caller's session, so a notification is committed exactly with the change it reports
(never lost on a crash, never sent for a rolled-back change). The conductor's
dispatcher (``flotilla.notify.dispatcher``) delivers the rows to the sinks.

Event types: ``magnum.cluster.<action>``; a cluster created through ``/v1/bays``
also gets the guide's ``magnum.bay.<action>d`` event (``service/magnum/bay`` URIs).
"""

from __future__ import annotations

import socket
from datetime import datetime
from typing import Any, Literal, get_args

from pycadf import attachment, cadftaxonomy, cadftype, event, resource
from pycadf import reason as cadfreason
from sqlalchemy import select
from sqlalchemy.orm import Session

from flotilla.db import models as m
from flotilla.db.models import utcnow
from flotilla.db.outbox import OutboxNotification

Action = Literal["create", "update", "delete"]
Outcome = Literal["pending", "success", "failure"]

CLUSTER_URI = "service/magnum/cluster"
BAY_URI = "service/magnum/bay"
#: The guide's bay event types (past tense), sent beside ``magnum.cluster.<action>``.
BAY_EVENT_TYPES: dict[str, str] = {
    "create": "magnum.bay.created",
    "update": "magnum.bay.updated",
    "delete": "magnum.bay.deleted",
}
#: ``reasonType`` of the CADF reason that carries ``emit(reason=...)``.
REASON_TYPE = "flotilla/status_reason"


def publisher_id() -> str:
    """``container-infra.<host>``, as Magnum's conductor publishes."""
    return f"container-infra.{socket.gethostname()}"


def priority_for(outcome: str) -> str:
    """oslo.messaging priority: ``error`` for failures, ``info`` otherwise."""
    return "error" if outcome == "failure" else "info"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def cluster_data(
    session: Session, cluster: m.Cluster, counts: tuple[int, int] | None = None
) -> dict[str, Any]:
    """The ``cluster_data`` attachment: Magnum's keys, ``docker_volume_size:`` colon included.

    ``counts``: (masters, workers) when the caller knows them (a create); else the
    nodegroups are read."""
    if counts is None:
        groups = list(session.scalars(select(m.NodeGroup).where(m.NodeGroup.cluster_id == cluster.uuid)))
        counts = (
            sum(g.node_count for g in groups if g.role == "master"),
            sum(g.node_count for g in groups if g.role != "master"),
        )
    return {
        "status": cluster.status,
        "status_reason": cluster.status_reason,
        "project_id": cluster.project_id,
        "created_at": _iso(cluster.created_at),
        "updated_at": _iso(cluster.updated_at),
        "cluster_template_id": cluster.cluster_template_id,
        "keypair": cluster.keypair,
        # Sic: Magnum's key has a trailing colon, and consumers match on it.
        "docker_volume_size:": cluster.docker_volume_size,
        "labels": dict(cluster.labels or {}),
        "master_flavor_id": cluster.master_flavor_id,
        "flavor_id": cluster.flavor_id,
        "stack_id": cluster.stack_id,
        "health_status": cluster.health_status,
        "create_timeout": cluster.create_timeout,
        "api_address": cluster.api_address,
        "discovery_url": cluster.discovery_url,
        "node_addresses": list(cluster.node_addresses or []),
        "master_addresses": list(cluster.master_addresses or []),
        "node_count": counts[1],
        "master_count": counts[0],
    }


def build_payload(
    *,
    cluster: m.Cluster,
    data: dict[str, Any],
    action: Action,
    outcome: Outcome,
    ctx_user_id: str | None,
    ctx_project_id: str | None,
    type_uri: str = CLUSTER_URI,
    reason: str | None = None,
) -> dict[str, Any]:
    """The CADF event (``pycadf``) as a JSON-ready dict; ``type_uri`` is the cluster or bay URI."""
    initiator = resource.Resource(typeURI=cadftaxonomy.ACCOUNT_USER)
    if ctx_user_id:
        initiator.user_id = ctx_user_id
    if ctx_project_id:
        initiator.project_id = ctx_project_id
    target = resource.Resource(id=cluster.uuid, name=cluster.name, typeURI=type_uri)
    target.add_attachment(
        attach_val=attachment.Attachment(typeURI=CLUSTER_URI, content=data, name="cluster_data")
    )
    cadf = event.Event(
        eventType=cadftype.EVENTTYPE_ACTIVITY,
        action=action,
        outcome=outcome,
        initiator=initiator,
        target=target,
        observer=resource.Resource(typeURI=type_uri),
    )
    if reason:
        cadf.reason = cadfreason.Reason(reasonType=REASON_TYPE, reasonCode=reason)
    payload: dict[str, Any] = cadf.as_dict()
    return payload


def emit(
    session: Session,
    *,
    cluster: m.Cluster,
    action: Action,
    outcome: Outcome,
    ctx_user_id: str | None,
    ctx_project_id: str | None,
    reason: str | None = None,
    counts: tuple[int, int] | None = None,
) -> None:
    """Queue the notification(s) for ``cluster`` in the caller's transaction.

    Call it in the transaction that makes the change (before a purge deletes the
    cluster's nodegroups, so the counts are still there). Sends nothing; raises
    ValueError for an unknown action or outcome.
    """
    if action not in get_args(Action):
        raise ValueError(f"unknown notification action {action!r}; expected one of {get_args(Action)}")
    if outcome not in get_args(Outcome):
        raise ValueError(f"unknown notification outcome {outcome!r}; expected one of {get_args(Outcome)}")
    data = cluster_data(session, cluster, counts)
    kinds = [(f"magnum.cluster.{action}", CLUSTER_URI)]
    if cluster.created_via == "bay":
        kinds.append((BAY_EVENT_TYPES[action], BAY_URI))
    now = utcnow()
    publisher = publisher_id()
    for event_type, type_uri in kinds:
        payload = build_payload(
            cluster=cluster, data=data, action=action, outcome=outcome, ctx_user_id=ctx_user_id,
            ctx_project_id=ctx_project_id, type_uri=type_uri, reason=reason,
        )  # fmt: skip
        row = OutboxNotification(
            created_at=now, event_type=event_type, priority=priority_for(outcome), publisher_id=publisher,
            payload=payload, attempts=0, next_attempt_at=now,
        )  # fmt: skip
        session.add(row)
