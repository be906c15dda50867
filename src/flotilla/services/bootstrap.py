"""First-start work: schema, seed data, the admin token and ``clouds.yaml``."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import yaml

from flotilla.datadir import private_dir
from flotilla.db import migrate
from flotilla.db.engine import Database
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
    endpoint = settings.endpoint + "/v1"
    existing: dict[str, object] = {}
    if path.is_file():
        existing = yaml.safe_load(path.read_text()) or {}
    clouds = existing.get("clouds") if isinstance(existing, dict) else None
    cloud = clouds.get(CLOUD_NAME) if isinstance(clouds, dict) else None
    token = None
    if isinstance(cloud, dict) and isinstance(cloud.get("auth"), dict):
        token = cloud["auth"].get("token")
        with db.reader() as s:
            if token and tokens.resolve(s, str(token)) is None:
                log.warning("%s holds a token this database does not know; creating a new one", path)
                token = None
    if not token:
        with db.session() as s:
            token = tokens.create(
                s, user_id="admin", project_id="admin", roles=["admin"], description="created at first start"
            )
        log.info("created the admin token; it is in %s", path)
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
    return path
