"""The local infrastructure catalog: the guide's Glance/Nova/Neutron names.

Flavors and networks are operator data (admins write them); images are registered
by admins or by the image builder; keypairs belong to a project.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Dialect, TextClause, or_, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from flotilla import domain
from flotilla.context import RequestContext
from flotilla.db import models as m
from flotilla.db.prepared import PreparedWrite
from flotilla.errors import Conflict, Forbidden, Invalid, NotFound
from flotilla.idents import is_uuid, keypair_name_problem, new_uuid

SEED_FLAVORS: tuple[tuple[str, float, int], ...] = (
    ("m1.tiny", 0.5, 512),
    ("m1.small", 1.0, 1024),
    ("m1.medium", 2.0, 2048),
    ("m1.large", 2.0, 4096),
)
SEED_NETWORKS: tuple[tuple[str, bool], ...] = (("public", True),)


def seed(session: Session) -> None:
    """Insert the default flavors and the external network ``public`` once."""
    have = set(session.scalars(select(m.Flavor.name)))
    for name, vcpus, ram in SEED_FLAVORS:
        if name not in have:
            session.add(m.Flavor(uuid=new_uuid(), name=name, vcpus=vcpus, ram_mb=ram))
    nets = set(session.scalars(select(m.Network.name)))
    for name, external in SEED_NETWORKS:
        if name not in nets:
            session.add(m.Network(uuid=new_uuid(), name=name, external=external))


def _require_admin(ctx: RequestContext, what: str) -> None:
    if not ctx.is_admin:
        raise Forbidden(f"Policy doesn't allow {what} to be performed.")


def get_one(session: Session, model: Any, ident: str, label: str) -> Any:
    col = model.uuid if is_uuid(ident) else model.name
    row = session.scalars(select(model).where(col == ident)).first()
    if row is None:
        raise NotFound(f"{label} {ident} could not be found.")
    return row


# ---- flavors -------------------------------------------------------------------------


def list_flavors(session: Session) -> list[m.Flavor]:
    return list(session.scalars(select(m.Flavor).order_by(m.Flavor.ram_mb, m.Flavor.name)))


def find_flavor(session: Session, ident: str) -> m.Flavor:
    """Raises Invalid naming the flavors that exist (the guide's Nova check)."""
    col = m.Flavor.uuid if is_uuid(ident) else m.Flavor.name
    row = session.scalars(select(m.Flavor).where(col == ident)).first()
    if row is None:
        names = ", ".join(f.name for f in list_flavors(session)) or "none"
        raise Invalid(f"Unable to find flavor {ident}. Available flavors: {names}.")
    return row


def flavor_spec(row: m.Flavor) -> domain.Flavor:
    return domain.Flavor(name=row.name, vcpus=row.vcpus, ram_mb=row.ram_mb, disk_gb=row.disk_gb)


def create_flavor(session: Session, ctx: RequestContext, name: str, vcpus: float, ram_mb: int) -> m.Flavor:
    _require_admin(ctx, "flavor:create")
    if vcpus <= 0 or ram_mb < 64:
        raise Invalid("A flavor needs vcpus > 0 and ram_mb >= 64.")
    if session.scalars(select(m.Flavor).where(m.Flavor.name == name)).first():
        raise Conflict(f"Flavor {name} already exists.")
    row = m.Flavor(uuid=new_uuid(), name=name, vcpus=vcpus, ram_mb=ram_mb)
    session.add(row)
    session.flush()  # fills created_at for the response
    return row


def delete_flavor(session: Session, ctx: RequestContext, ident: str) -> None:
    _require_admin(ctx, "flavor:delete")
    session.delete(get_one(session, m.Flavor, ident, "Flavor"))


# ---- networks ------------------------------------------------------------------------


def list_networks(session: Session) -> list[m.Network]:
    return list(session.scalars(select(m.Network).order_by(m.Network.name)))


def find_external_network(session: Session, ident: str) -> m.Network:
    col = m.Network.uuid if is_uuid(ident) else m.Network.name
    row = session.scalars(select(m.Network).where(col == ident, m.Network.external.is_(True))).first()
    if row is None:
        names = ", ".join(n.name for n in list_networks(session) if n.external) or "none"
        raise Invalid(f"Unable to find external network {ident}. Available external networks: {names}.")
    return row


#: Docker's own network names: not networks a cluster may join (``host`` is the host's
#: network namespace, ``none`` no network, ``bridge`` the engine's shared default bridge).
RESERVED_NETWORK_NAMES = frozenset({"host", "none", "bridge", "default"})
NETWORK_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")


def find_fixed_network(session: Session, ident: str) -> m.Network:
    """The network a template's or cluster's ``fixed_network`` names.

    The rule: only a non-external network an admin registered in the catalog
    (``POST /local/v1/networks``) may be named, so users never choose raw Docker networks:
    not another project's cluster network, not ``host``. Admins decide which networks
    are shared, and by whom (every project that can see a template naming it).
    Raises Invalid (400) with the accepted names.
    """
    if ident in RESERVED_NETWORK_NAMES:
        raise Invalid(
            f"fixed_network {ident} is Docker's {ident} network, which cluster nodes may not use; "
            "leave fixed_network unset to give the cluster its own network."
        )
    col = m.Network.uuid if is_uuid(ident) else m.Network.name
    row = session.scalars(select(m.Network).where(col == ident, m.Network.external.is_(False))).first()
    if row is None:
        names = ", ".join(n.name for n in list_networks(session) if not n.external) or "none"
        raise Invalid(
            f"Unable to find network {ident} for fixed_network: it must name a non-external network an admin "
            f"registered in the catalog (/local/v1/networks). Available: {names}. Leave it unset to give the "
            "cluster its own network."
        )
    return row


def create_network(session: Session, ctx: RequestContext, name: str, external: bool) -> m.Network:
    _require_admin(ctx, "network:create")
    if name in RESERVED_NETWORK_NAMES or not NETWORK_NAME_RE.match(name):
        raise Invalid(
            f"Invalid network name {name!r}: use letters, digits, '_', '.' and '-' (starting with a letter "
            f"or digit, at most 255 characters); {', '.join(sorted(RESERVED_NETWORK_NAMES))} are Docker's own."
        )
    if session.scalars(select(m.Network).where(m.Network.name == name)).first():
        raise Conflict(f"Network {name} already exists.")
    row = m.Network(uuid=new_uuid(), name=name, external=external)
    session.add(row)
    session.flush()  # fills created_at for the response
    return row


def delete_network(session: Session, ctx: RequestContext, ident: str) -> None:
    _require_admin(ctx, "network:delete")
    session.delete(get_one(session, m.Network, ident, "Network"))


# ---- images --------------------------------------------------------------------------


def list_images(session: Session) -> list[m.Image]:
    return list(session.scalars(select(m.Image).order_by(m.Image.name)))


#: The guide's image names -> the local node image they stand for when no image of that
#: name is registered (the guide boots Fedora Atomic from Glance; here nodes run the node
#: image built locally with ``flotilla image-build flotilla-node``). An image registered
#: under the guide's name itself always wins.
GUIDE_IMAGE_ALIASES: dict[str, str] = {"fedora-atomic-latest": "flotilla-node"}


def distro_if_all_found(
    session: Session, *, image: str, flavors: Sequence[str], external_network: str | None
) -> str | None:
    """One statement for the usual case of a template write: the image's ``os_distro``
    ("" when it has none) when the image, every flavor and the external network exist as
    named; None when any is missing (then :func:`find_image` and friends, one by one, say
    which and what exists instead).

    The statement is plain SQL kept per shape (uuid or name for each reference, how many
    flavors): building it from ORM expressions cost more than running it (issue 13)."""
    stmt, params = _distro_query(image, flavors, external_network)
    return _distro(session.connection().execute(stmt.text, params).one())  # Core: no ORM compile step


def distro_if_all_found_dbapi(
    conn: Any, dialect: Dialect, *, image: str, flavors: Sequence[str], external_network: str | None
) -> str | None:
    """:func:`distro_if_all_found` on a DBAPI connection in the caller's transaction
    (:meth:`flotilla.db.engine.Database.dbapi_now`): the same statement and answer."""
    stmt, params = _distro_query(image, flavors, external_network)
    return _distro(stmt.prepared.execute(conn, dialect, params)[0])


@dataclass(frozen=True)
class _DistroStatement:
    text: TextClause
    prepared: PreparedWrite


def _distro_query(
    image: str, flavors: Sequence[str], external_network: str | None
) -> tuple[_DistroStatement, dict[str, Any]]:
    shape = (
        is_uuid(image),
        tuple(is_uuid(f) for f in flavors),
        None if not external_network else is_uuid(external_network),
    )
    stmt = _DISTRO_SQL.get(shape)
    if stmt is None:
        text_ = _distro_statement(*shape)
        stmt = _DISTRO_SQL.setdefault(shape, _DistroStatement(text_, PreparedWrite(text_)))
    params: dict[str, Any] = {"image": image, "external": True}
    params.update({f"flavor{i}": f for i, f in enumerate(flavors)})
    if external_network:
        params["network"] = external_network
    return stmt, params


def _distro(row: Sequence[Any]) -> str | None:
    if any(v is None for v in row):
        return None
    return str(row[0])


_DISTRO_SQL: dict[tuple[bool, tuple[bool, ...], bool | None], _DistroStatement] = {}


def _distro_statement(
    image_uuid: bool, flavor_uuids: tuple[bool, ...], network_uuid: bool | None
) -> TextClause:
    def col(uuid: bool) -> str:
        return "uuid" if uuid else "name"

    cols = [f"(SELECT coalesce(os_distro, '') FROM images WHERE {col(image_uuid)} = :image LIMIT 1)"]
    cols += [
        f"(SELECT id FROM flavors WHERE {col(u)} = :flavor{i} LIMIT 1)" for i, u in enumerate(flavor_uuids)
    ]
    if network_uuid is not None:
        cols.append(
            f"(SELECT id FROM networks WHERE {col(network_uuid)} = :network AND external = :external LIMIT 1)"
        )
    return text("SELECT " + ", ".join(cols))


def find_image(session: Session, ident: str) -> m.Image:
    """Raises Invalid naming the images that exist (and, for the guide's image name, the
    node image it stands for)."""
    col = m.Image.uuid if is_uuid(ident) else m.Image.name
    row = session.scalars(select(m.Image).where(col == ident)).first()
    if row is None and ident in GUIDE_IMAGE_ALIASES:
        target = GUIDE_IMAGE_ALIASES[ident]
        row = session.scalars(select(m.Image).where(m.Image.name == target)).first()
        if row is None:
            raise Invalid(
                f"Image {ident} could not be found. It is the guide's image; here it stands for the local node "
                f"image {target}: build it with `flotilla image-build {target} --os-distro debian`."
            )
    if row is None:
        names = (
            ", ".join(i.name for i in list_images(session)) or "none (build one with `flotilla image-build`)"
        )
        raise Invalid(f"Image {ident} could not be found. Available images: {names}.")
    return row


def register_image(
    session: Session,
    ctx: RequestContext,
    name: str,
    os_distro: str | None,
    source: str | None,
    build_method: str | None = None,
    *,
    replace: bool = False,
) -> m.Image:
    """Register (or with ``replace``, re-point) an image in the catalog."""
    _require_admin(ctx, "image:create")
    if not name or len(name) > 255:
        raise Invalid("An image name must have 1 to 255 characters.")
    row = session.scalars(select(m.Image).where(m.Image.name == name)).first()
    if row is not None:
        if not replace:
            raise Conflict(f"Image {name} already exists.")
        row.os_distro, row.source, row.build_method = os_distro, source, build_method
        return row
    row = m.Image(uuid=new_uuid(), name=name, os_distro=os_distro, source=source, build_method=build_method)
    session.add(row)
    return row


def delete_image(session: Session, ctx: RequestContext, ident: str) -> m.Image:
    _require_admin(ctx, "image:delete")
    row: m.Image = get_one(session, m.Image, ident, "Image")
    in_use = session.scalars(
        select(m.ClusterTemplate.uuid).where(
            or_(m.ClusterTemplate.image_id == row.name, m.ClusterTemplate.image_id == row.uuid)
        )
    ).first()
    if in_use:
        raise Invalid(f"Image {row.name} is used by cluster template {in_use}; delete the template first.")
    session.delete(row)
    return row


# ---- keypairs ------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedKey:
    public_key: str
    fingerprint: str


def parse_public_key(text: str) -> ParsedKey:
    """Accept an OpenSSH public key line; the fingerprint is MD5 like Nova's."""
    parts = text.strip().split()
    if len(parts) < 2 or not parts[0].startswith(("ssh-", "ecdsa-", "sk-")):
        raise Invalid(
            "Keypair data is invalid: expected an OpenSSH public key line such as 'ssh-ed25519 AAAA...'."
        )
    try:
        raw = base64.b64decode(parts[1], validate=True)
    except ValueError:
        raise Invalid("Keypair data is invalid: the key body is not base64.") from None
    digest = hashlib.md5(raw, usedforsecurity=False).hexdigest()
    return ParsedKey(" ".join(parts[:3]), ":".join(digest[i : i + 2] for i in range(0, 32, 2)))


def list_keypairs(session: Session, ctx: RequestContext) -> list[m.Keypair]:
    return list(
        session.scalars(
            select(m.Keypair).where(m.Keypair.project_id == ctx.project_id).order_by(m.Keypair.name)
        )
    )


def find_keypair(session: Session, ctx: RequestContext, name: str) -> m.Keypair:
    """Raises NotFound (``Unable to find keypair X.``, Magnum's 404)."""
    row = session.scalars(
        select(m.Keypair).where(m.Keypair.name == name, m.Keypair.project_id == ctx.project_id)
    ).first()
    if row is None:
        raise NotFound(f"Unable to find keypair {name}.")
    return row


def create_keypair(session: Session, ctx: RequestContext, name: str, public_key: str) -> m.Keypair:
    if not ctx.can_write:
        raise Forbidden("Policy doesn't allow keypair:create to be performed.")
    problem = keypair_name_problem(name)
    if problem is not None:
        raise Invalid(problem)
    parsed = parse_public_key(public_key)
    row = m.Keypair(
        name=name,
        project_id=ctx.project_id,
        user_id=ctx.user_id,
        public_key=parsed.public_key,
        fingerprint=parsed.fingerprint,
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"Key pair '{name}' already exists.") from None
    return row


def delete_keypair(session: Session, ctx: RequestContext, name: str) -> None:
    if not ctx.can_write:
        raise Forbidden("Policy doesn't allow keypair:delete to be performed.")
    session.delete(find_keypair(session, ctx, name))
