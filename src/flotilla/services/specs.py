"""Build the frozen ``ClusterSpec`` a COE driver plans from (no ORM crosses the boundary)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from flotilla.db import models as m
from flotilla.drivers.base import ClusterSpec, NodeGroupSpec
from flotilla.services import catalog, clusters


def build(session: Session, cluster: m.Cluster, op: m.Operation | None = None) -> ClusterSpec:
    template = clusters.template_of(session, cluster)
    image = catalog.find_image(session, template.image_id)
    image_ref = image.source or image.name
    params = (op.params or {}) if op is not None else {}
    groups = {}
    committed: tuple[str, ...] = ()
    for role in ("master", "worker"):
        ng = clusters.default_group(session, cluster, role)
        names = tuple(ng.node_names or ())
        if role == "worker":
            committed = names
        if params.get("nodegroup") == ng.uuid and params.get("names") is not None:
            names = tuple(params["names"])  # the operation's target membership
        flavor = catalog.flavor_spec(catalog.find_flavor(session, ng.flavor_id or "m1.small"))
        groups[role] = NodeGroupSpec(
            name=ng.name,
            role=role,
            node_count=ng.node_count,
            flavor=flavor,
            image_ref=image_ref,
            names=names,
        )
    key = None
    if cluster.keypair:
        row = session.scalars(
            select(m.Keypair).where(
                m.Keypair.name == cluster.keypair, m.Keypair.project_id == cluster.project_id
            )
        ).first()
        key = row.public_key if row else None
    return ClusterSpec(
        uuid=cluster.uuid, name=cluster.name or cluster.uuid, coe=template.coe, image_ref=image_ref,
        master=groups["master"], worker=groups["worker"], tls_disabled=template.tls_disabled,
        docker_volume_size=cluster.docker_volume_size, docker_storage_driver=template.docker_storage_driver,
        network_driver=template.network_driver, volume_driver=template.volume_driver,
        dns_nameserver=template.dns_nameserver, http_proxy=template.http_proxy, https_proxy=template.https_proxy,
        no_proxy=template.no_proxy, fixed_network=cluster.fixed_network, master_lb_enabled=cluster.master_lb_enabled,
        registry_enabled=template.registry_enabled, labels={k: str(v) for k, v in (cluster.labels or {}).items()},
        ssh_public_key=key, nodes_to_remove=tuple(params.get("nodes_to_remove") or ()),
        previous_worker_names=committed, project_id=cluster.project_id,
    )  # fmt: skip
