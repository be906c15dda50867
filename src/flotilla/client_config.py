"""Where the CLI finds its endpoint and token (used by ``Client.from_environment``)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from flotilla.client import ApiError

CLOUD_NAME = "flotilla"


def resolve_connection(
    os_cloud: str | None = None,
    os_token: str | None = None,
    os_endpoint: str | None = None,
    data_dir: str | Path | None = None,
) -> tuple[str, str | None]:
    """``(endpoint, token)``, in the order documented on ``Client.from_environment``.

    Raises :class:`ApiError` (status 0) when nothing usable is found.
    """
    token = os_token or os.environ.get("OS_TOKEN") or None
    endpoint = os_endpoint or os.environ.get("OS_ENDPOINT_OVERRIDE") or None
    if token and endpoint:
        return endpoint, token
    ddir = _data_dir(data_dir)
    cloud_name = os_cloud or os.environ.get("OS_CLOUD") or None
    if cloud_name:
        files = _clouds_files(ddir)
        found = _find_cloud(cloud_name, files)
        if found is None:
            searched = ", ".join(str(p) for p in files)
            raise ApiError(
                0, f"Cloud {cloud_name!r} is not defined in any clouds.yaml (searched: {searched})."
            )
        path, cloud = found
        origin = f"cloud {cloud_name!r} in {path}"
    else:
        path = ddir / "clouds.yaml"
        local = _find_cloud(CLOUD_NAME, [path])
        if local is None:
            if endpoint:
                return endpoint, token
            raise ApiError(
                0,
                f"No Flotilla credentials found: {path} does not exist (or has no cloud "
                f"{CLOUD_NAME!r}). Start the server with `flotilla serve` (it writes that file), pass "
                "--data-dir of a running server, or give --os-token and --os-endpoint-override "
                "(env OS_TOKEN and OS_ENDPOINT_OVERRIDE), or --os-cloud.",
            )
        cloud = local[1]
        origin = f"cloud {CLOUD_NAME!r} in {path}"
    cloud_token, cloud_endpoint = _cloud_credentials(cloud)
    token = token or cloud_token
    endpoint = endpoint or cloud_endpoint
    if not endpoint:
        auth_type = cloud.get("auth_type", "password")
        raise ApiError(
            0,
            f"{origin} has no usable endpoint (auth_type {auth_type}): Flotilla's CLI needs auth_type "
            "admin_token with auth.token and auth.endpoint, or container_infra_endpoint_override; "
            "or pass --os-token and --os-endpoint-override.",
        )
    return endpoint, token


def _data_dir(data_dir: str | Path | None) -> Path:
    if data_dir:
        return Path(data_dir).expanduser()
    env = os.environ.get("FLOTILLA_DATA_DIR")
    if env:
        return Path(env).expanduser()
    from flotilla.datadir import default_data_dir

    return default_data_dir()


def _clouds_files(data_dir: Path) -> list[Path]:
    files: list[Path] = []
    env = os.environ.get("OS_CLIENT_CONFIG_FILE")
    if env:
        files.append(Path(env).expanduser())
    files += [
        Path.cwd() / "clouds.yaml",
        Path.home() / ".config" / "openstack" / "clouds.yaml",
        Path("/etc/openstack/clouds.yaml"),
        data_dir / "clouds.yaml",
    ]
    return files


def _find_cloud(name: str, files: Iterable[Path]) -> tuple[Path, dict[str, Any]] | None:
    for path in files:
        try:
            doc = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            continue
        except (OSError, yaml.YAMLError) as exc:
            raise ApiError(0, f"Cannot read {path}: {exc}") from None
        clouds = doc.get("clouds") if isinstance(doc, dict) else None
        cloud = clouds.get(name) if isinstance(clouds, dict) else None
        if isinstance(cloud, dict):
            return path, cloud
    return None


def _cloud_credentials(cloud: Mapping[str, Any]) -> tuple[str | None, str | None]:
    raw = cloud.get("auth")
    auth: Mapping[str, Any] = raw if isinstance(raw, dict) else {}
    token = auth.get("token")
    endpoint = cloud.get("container_infra_endpoint_override") or auth.get("endpoint")
    return (str(token) if token else None), (str(endpoint) if endpoint else None)
