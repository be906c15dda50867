"""Scaling a cluster's worker nodegroups: PATCH ``node_count`` (``update``) and the
resize action (``resize``, also the retry of a failed update).

The nodegroup's ``node_names`` stay the committed membership; the update operation carries
the target membership and ``operations.finish`` commits it when the operation succeeds.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from flotilla import lifecycle
from flotilla.context import RequestContext
from flotilla.db import models as m
from flotilla.drivers.registry import CoeRegistry
from flotilla.errors import Invalid, InvalidTransition, NotFound
from flotilla.lifecycle import Event, Status
from flotilla.services import operations, templates
from flotilla.services.clusters import (
    check_write,
    default_group,
    node_prefix,
    nodegroups,
    notify,
    update_health,
)
from flotilla.services.commands import Resize, UpdateCluster, check_size, validate_resize
from flotilla.services.limits import Limits

#: The fields a PATCH may change.
MUTABLE = frozenset({"node_count", "health_status", "health_status_reason"})


def worker_names(prefix: str, current: list[str], target: int, remove: list[str]) -> list[str]:
    """The worker names after a scale to ``target``: drop ``remove`` first, then the
    newest; add new names with increasing indexes (never reusing one in the list)."""
    keep = [n for n in current if n not in remove]
    while len(keep) > target:
        keep.pop()
    index = 1 + max((int(n.rsplit("-", 1)[1]) for n in current if n.rsplit("-", 1)[1].isdigit()), default=-1)
    while len(keep) < target:
        keep.append(f"{prefix}-node-{index}")
        index += 1
    return keep


def _start_update(
    session: Session,
    ctx: RequestContext,
    cluster: m.Cluster,
    allowed: frozenset[Status],
    reason: str | None = None,
) -> None:
    if Status(cluster.status) not in allowed:
        raise InvalidTransition(
            f'Updating a cluster when status is "{cluster.status}" is not supported. {_what_to_do(cluster)}'
        )
    operations.transition(session, cluster, Event.UPDATE_REQUESTED, reason)


def _what_to_do(cluster: m.Cluster) -> str:
    """The way forward from a status that refuses an update (lifecycle.RESIZABLE is the rule)."""
    status = Status(cluster.status)
    reason = (cluster.status_reason or "no reason recorded")[:300]
    if status in lifecycle.IN_PROGRESS:
        return "Wait for the current operation to end."
    if status == Status.UPDATE_FAILED:
        return (
            f"The last update failed ({reason}) and the node count was restored. Retry it with a resize, "
            f"which a cluster in UPDATE_FAILED accepts: POST /v1/clusters/{cluster.uuid}/actions/resize "
            '{"node_count": N} (`openstack coe cluster resize`, `flotilla cluster-resize`), or delete the cluster.'
        )
    if status == Status.CREATE_FAILED:
        return f"The cluster was never created ({reason}); delete it and create it again."
    if status == Status.DELETE_FAILED:
        return f"The last delete failed ({reason}); delete the cluster again."
    return f"Delete the cluster ({reason})."


def resize(
    session: Session,
    ctx: RequestContext,
    cluster: m.Cluster,
    cmd: Resize,
    *,
    coes: CoeRegistry,
    limits: Limits,
) -> m.Operation | None:
    """Change a worker nodegroup's size (the resize action: also a retry from
    UPDATE_FAILED). Returns the operation, or None for a no-op."""
    return _scale(session, ctx, cluster, cmd, coes=coes, limits=limits, resize=True)


def update(
    session: Session,
    ctx: RequestContext,
    cluster: m.Cluster,
    cmd: UpdateCluster,
    *,
    coes: CoeRegistry,
    limits: Limits,
) -> m.Operation | None:
    """Apply a PATCH: a new node count (an update operation), then hand-set health.
    Returns the update operation, or None when none was needed."""
    op = None
    if cmd.resize is not None:
        op = _scale(session, ctx, cluster, cmd.resize, coes=coes, limits=limits, resize=False)
    if cmd.health is not None:
        update_health(session, ctx, cluster, cmd.health)
    return op


def _scale(
    session: Session,
    ctx: RequestContext,
    cluster: m.Cluster,
    cmd: Resize,
    *,
    coes: CoeRegistry,
    resize: bool,
    limits: Limits,
) -> m.Operation | None:
    node_count, nodegroup = cmd.node_count, cmd.nodegroup
    check_write(ctx, cluster, "resize" if resize else "update")
    check_size(limits.max_nodes_per_cluster, _count(session, cluster, "master"), node_count)
    validate_resize(cmd)
    ng = _find_group(session, cluster, nodegroup) if nodegroup else default_group(session, cluster, "worker")
    if ng.role == "master":
        raise Invalid("Resizing a master nodegroup is not supported.")
    if node_count < ng.min_node_count or (ng.max_node_count is not None and node_count > ng.max_node_count):
        raise Invalid(
            f"Resizing {ng.name} outside the allowed range: min_node_count = {ng.min_node_count}, "
            f"max_node_count = {ng.max_node_count}"
        )
    template = session.scalars(
        select(m.ClusterTemplate).where(m.ClusterTemplate.uuid == cluster.cluster_template_id)
    ).one()
    driver = coes.require(template.coe, template.cluster_distro, template.server_type)
    driver.validate_template({**templates.writable_view(template), "master_count": _count(session, cluster, "master"),
                              "node_count": node_count, "labels": cluster.labels or {}, "scaling": True})  # fmt: skip
    current = list(ng.node_names or [])
    remove = list(cmd.nodes_to_remove)
    unknown = [n for n in remove if n not in current]
    if unknown:
        raise Invalid(
            f"Cannot remove {', '.join(unknown)}: not a node of {ng.name}. Nodes: {', '.join(current) or 'none'}."
        )
    # After a failed operation the nodes may differ from the record: the same count then
    # reconciles (finishes or removes what the failed attempt left) instead of doing nothing.
    retry = resize and cluster.status == Status.UPDATE_FAILED.value  # resize is allowed from UPDATE_FAILED
    if node_count == ng.node_count and not remove and not retry:
        return None
    names = worker_names(node_prefix(cluster.name or "cluster", cluster.uuid), current, node_count, remove)
    added = [n for n in names if n not in current]
    purpose = f"{cmd.reason} with {', '.join(added)}" if cmd.reason and added else cmd.reason
    _start_update(session, ctx, cluster, lifecycle.RESIZABLE if resize else lifecycle.UPDATABLE, purpose)
    previous = ng.node_count
    ng.node_count = node_count
    # ng.node_names stays the committed membership; the operation carries the target and
    # operations.finish commits it on success (a failure leaves the record as it was).
    operations.transition_group(ng, Event.UPDATE_REQUESTED)
    notify(session, ctx, cluster, "update")
    return operations.enqueue(
        session, cluster, "update",
        params={"nodegroup": ng.uuid, "previous_node_count": previous, "previous_names": current,
                "names": names, "nodes_to_remove": remove, **({"reason": purpose} if purpose else {})},
        user_id=ctx.user_id, project_id=ctx.project_id,
    )  # fmt: skip


def _count(session: Session, cluster: m.Cluster, role: str) -> int:
    return sum(ng.node_count for ng in nodegroups(session, cluster) if ng.role == role)


def _find_group(session: Session, cluster: m.Cluster, ident: str) -> m.NodeGroup:
    for ng in nodegroups(session, cluster):
        if ident in (ng.uuid, ng.name, str(ng.id)):
            return ng
    raise NotFound(f"Nodegroup {ident} could not be found.")
