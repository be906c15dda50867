"""First-start work: schema, seed data, the admin token and ``clouds.yaml``."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import yaml

from flotilla.datadir import private_dir
from flotilla.db import migrate
from flotilla.db.engine import Database
from flotilla.errors import Invalid
from flotilla.services import catalog, tokens
from flotilla.settings import Settings

log = logging.getLogger(__name__)

CLOUD_NAME = "flotilla"


def prepare_database(db: Database) -> None:
    """Migrate to head and seed the catalog. Idempotent."""
    migrate.upgrade(db.engine)
    with db.session() as s:
        catalog.seed(s)


def clouds_yaml_path(settings: Settings) -> Path:
    return settings.data_dir / "clouds.yaml"


def ensure_admin_credentials(settings: Settings, db: Database) -> Path | None:
    """On first start with ``auth_strategy=token``: create an admin token and write
    ``DATA_DIR/clouds.yaml`` (mode 0600) in the openstacksdk format, so ``flotilla``,
    ``magnum`` and ``openstack --os-cloud flotilla`` work with no extra flags.

    Rewrites the endpoint if it changed; never replaces an existing token.
    """
    if settings.auth_strategy != "token":
        return None
    path = clouds_yaml_path(settings)
    token = _current_token(path)
    if token:
        with db.reader() as s:
            if tokens.resolve(s, token) is None:
                log.warning("%s holds a token this database does not know; creating a new one", path)
                token = None
    if not token:
        with db.session() as s:
            token = tokens.create(
                s, user_id="admin", project_id="admin", roles=["admin"], description="created at first start"
            )
        log.info("created the admin token; it is in %s", path)
    write_clouds_yaml(settings, str(token))
    return path


def _current_token(path: Path) -> str | None:
    if not path.is_file():
        return None
    doc = yaml.safe_load(path.read_text()) or {}
    clouds = doc.get("clouds") if isinstance(doc, dict) else None
    cloud = clouds.get(CLOUD_NAME) if isinstance(clouds, dict) else None
    if isinstance(cloud, dict) and isinstance(cloud.get("auth"), dict):
        token = cloud["auth"].get("token")
        return str(token) if token else None
    return None


def rotate_admin_credentials(settings: Settings, db: Database) -> Path:
    """Replace the bootstrap admin token: a new one in the database and in ``clouds.yaml``
    (rewritten atomically, mode 0600), the old one (the token clouds.yaml held) revoked in
    the same transaction, so it stops working at once on every API process.

    Raises Invalid unless ``auth_strategy`` is ``token``.
    """
    if settings.auth_strategy != "token":
        raise Invalid(
            f"auth_strategy is {settings.auth_strategy}: there is no Flotilla admin token to rotate."
        )
    path = clouds_yaml_path(settings)
    with db.session() as s:
        token = tokens.rotate(s, _current_token(path), description="rotated by token-rotate-admin")
        s.flush()
        # Written before the commit: if this fails, the old token stays valid and in the file.
        write_clouds_yaml(settings, token)
    return path


def write_clouds_yaml(settings: Settings, token: str) -> None:
    """``DATA_DIR/clouds.yaml`` for the admin (mode 0600, written atomically)."""
    path = clouds_yaml_path(settings)
    endpoint = settings.endpoint + "/v1"
    doc = {
        "clouds": {
            CLOUD_NAME: {
                "auth_type": "admin_token",
                "auth": {"token": token, "endpoint": endpoint},
                "region_name": "RegionOne",
                "identity_api_version": 3,
                "container_infra_endpoint_override": endpoint,
            }
        }
    }
    private_dir(settings.data_dir)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        yaml.safe_dump(doc, fh, sort_keys=False)
    os.replace(tmp, path)
    os.chmod(path, 0o600)
