"""A small typed client for Flotilla's Magnum-compatible ``/v1`` API and ``/local/v1``.

Used by the ``flotilla`` CLI, the dashboard tests and the benchmarks. Every method
returns plain JSON data (dicts, or lists of dicts for the ``list_*`` methods) and
raises :class:`ApiError` for any non-2xx answer or transport problem, carrying the
server's own message (Magnum error body ``errors[0]``).

Typical use::

    client = Client.from_environment()          # DATA_DIR/clouds.yaml, env, ...
    tpl = client.create_template({"coe": "swarm", "image_id": "fedora-atomic-latest"})
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import httpx

TemplateView = Literal["clustertemplates", "baymodels"]
ClusterView = Literal["clusters", "bays"]


class ApiError(Exception):
    """A failed API call: ``status`` is the HTTP status (0 when no answer came back)."""

    def __init__(self, status: int, title: str, detail: str = "") -> None:
        self.status = status
        self.title = title
        self.detail = detail
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """The full text for users: the detail if the server gave one, else the title."""
        return self.detail or self.title or f"HTTP {self.status}"

    def __str__(self) -> str:
        return self.message


def _base_endpoint(endpoint: str) -> str:
    """``scheme://host[:port][/prefix]`` without a trailing ``/v1`` or ``/``."""
    url = endpoint.strip().rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ApiError(0, f"Invalid endpoint {endpoint!r}: expected http(s)://HOST:PORT[/v1].")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def _error_from_response(resp: httpx.Response) -> ApiError:
    status = resp.status_code
    fallback = (
        f"{resp.reason_phrase or 'Error'} (HTTP {status}): {resp.request.method} {resp.request.url.path}"
    )
    try:
        body = resp.json()
    except ValueError:
        text = resp.text.strip()
        return ApiError(status, fallback, text[:2000] if text else fallback)
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            first = errors[0]
            title = str(first.get("title") or "")
            detail = str(first.get("detail") or "")
            if not title and not detail:
                return ApiError(status, fallback)
            return ApiError(status, title or detail, detail or title)
        for key in ("error_message", "error", "detail", "message"):
            if body.get(key):
                text = str(body[key])
                return ApiError(status, text, text)
    return ApiError(status, fallback, resp.text.strip()[:2000] or fallback)


class Client:
    """HTTP client for one Flotilla (or Magnum) endpoint.

    ``endpoint`` may end with or without ``/v1``; ``token`` is sent as
    ``X-Auth-Token`` (``None`` for a ``noauth`` server).
    """

    def __init__(
        self, endpoint: str, token: str | None, *, api_version: str = "latest", timeout: float = 30
    ) -> None:
        self.endpoint = _base_endpoint(endpoint)
        self.token = token
        self.api_version = api_version
        headers = {
            "OpenStack-API-Version": f"container-infra {api_version}",
            "Accept": "application/json",
            "User-Agent": "flotilla-client",
        }
        if token:
            headers["X-Auth-Token"] = token
        self._http = httpx.Client(base_url=self.endpoint, headers=headers, timeout=timeout)

    # ----------------------------------------------------------------- lifecycle

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.endpoint!r})"

    # ----------------------------------------------------------------- transport

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        expect_body: bool = True,
        content: bytes | None = None,
        content_type: str = "application/octet-stream",
        timeout: float | None = None,
    ) -> Any:
        """Send one request; return the decoded JSON body (``None`` for an empty one).
        ``content`` sends raw bytes (of ``content_type``) instead of JSON."""
        clean = {k: _qs(v) for k, v in (params or {}).items() if v is not None}
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        try:
            if content is not None:
                resp = self._http.request(
                    method,
                    path,
                    content=content,
                    params=clean,
                    headers={"Content-Type": content_type},
                    **extra,
                )
            elif json is not None:
                resp = self._http.request(method, path, json=json, params=clean)
            else:
                resp = self._http.request(method, path, params=clean)
        except httpx.ConnectError:
            raise ApiError(
                0,
                f"The Flotilla server is not reachable at {self.endpoint}: start it with `flotilla serve` "
                "(or point --os-endpoint-override / OS_ENDPOINT_OVERRIDE at a running one).",
            ) from None
        except httpx.TimeoutException:
            raise ApiError(
                0, f"No answer from {self.endpoint} within the timeout ({method} {path})."
            ) from None
        except httpx.TransportError as exc:
            raise ApiError(0, f"Request to {self.endpoint} failed: {exc}") from None
        if resp.status_code >= 400:
            raise _error_from_response(resp)
        if not expect_body or not resp.content.strip():
            return None
        try:
            return resp.json()
        except ValueError:
            raise ApiError(
                resp.status_code, f"The server sent a non-JSON answer to {method} {path}."
            ) from None

    def _get_list(self, path: str, key: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """GET a collection; with ``limit`` follow ``next`` links until that many items came."""
        params = dict(params or {})
        limit = params.get("limit")
        body = self.request("GET", path, params=params)
        items: list[dict[str, Any]] = list(body.get(key) or [])
        while limit is not None and len(items) < int(limit) and body.get("next"):
            nxt = urlsplit(str(body["next"]))
            relative = urlunsplit(("", "", nxt.path, nxt.query, ""))
            body = self.request("GET", relative)
            page = list(body.get(key) or [])
            if not page:
                break
            items.extend(page)
        return items[: int(limit)] if limit is not None else items

    # ----------------------------------------------------------------- templates / baymodels

    def list_templates(self, view: TemplateView = "clustertemplates", **params: Any) -> list[dict[str, Any]]:
        """List templates; ``params``: limit, marker, sort_key, sort_dir, detail (bool)."""
        detail = bool(params.pop("detail", False))
        path = f"/v1/{view}/detail" if detail else f"/v1/{view}"
        return self._get_list(path, view, params)

    def get_template(self, ident: str, view: TemplateView = "clustertemplates") -> dict[str, Any]:
        return self._dict("GET", f"/v1/{view}/{ident}")

    def create_template(
        self, body: Mapping[str, Any], view: TemplateView = "clustertemplates"
    ) -> dict[str, Any]:
        return self._dict("POST", f"/v1/{view}", json=dict(body))

    def update_template(
        self, ident: str, patch_ops: Iterable[Mapping[str, Any]], view: TemplateView = "clustertemplates"
    ) -> dict[str, Any]:
        return self._dict("PATCH", f"/v1/{view}/{ident}", json=[dict(op) for op in patch_ops])

    def delete_template(self, ident: str, view: TemplateView = "clustertemplates") -> None:
        self.request("DELETE", f"/v1/{view}/{ident}", expect_body=False)

    # ----------------------------------------------------------------- clusters / bays

    def list_clusters(self, view: ClusterView = "clusters", **params: Any) -> list[dict[str, Any]]:
        """List clusters; ``params``: limit, marker, sort_key, sort_dir, detail (bool)."""
        detail = bool(params.pop("detail", False))
        path = f"/v1/{view}/detail" if detail else f"/v1/{view}"
        return self._get_list(path, view, params)

    def get_cluster(self, ident: str, view: ClusterView = "clusters") -> dict[str, Any]:
        return self._dict("GET", f"/v1/{view}/{ident}")

    def create_cluster(self, body: Mapping[str, Any], view: ClusterView = "clusters") -> dict[str, Any]:
        """POST a cluster (or bay); the answer is ``{"uuid": ...}`` (a full bay at 1.1)."""
        return self._dict("POST", f"/v1/{view}", json=dict(body))

    def update_cluster(
        self,
        ident: str,
        patch_ops: Iterable[Mapping[str, Any]],
        view: ClusterView = "clusters",
        *,
        rollback: bool = False,
    ) -> dict[str, Any]:
        params = {"rollback": "True"} if rollback else None
        return self._dict("PATCH", f"/v1/{view}/{ident}", json=[dict(op) for op in patch_ops], params=params)

    def delete_cluster(self, ident: str, view: ClusterView = "clusters") -> None:
        self.request("DELETE", f"/v1/{view}/{ident}", expect_body=False)

    def resize_cluster(
        self,
        ident: str,
        node_count: int,
        nodes_to_remove: list[str] | None = None,
        nodegroup: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"node_count": node_count}
        if nodes_to_remove:
            body["nodes_to_remove"] = list(nodes_to_remove)
        if nodegroup:
            body["nodegroup"] = nodegroup
        return self._dict("POST", f"/v1/clusters/{ident}/actions/resize", json=body)

    def upgrade_cluster(
        self, ident: str, cluster_template: str, max_batch_size: int = 1, nodegroup: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"cluster_template": cluster_template, "max_batch_size": max_batch_size}
        if nodegroup:
            body["nodegroup"] = nodegroup
        return self._dict("POST", f"/v1/clusters/{ident}/actions/upgrade", json=body)

    def list_nodegroups(self, cluster: str, **params: Any) -> list[dict[str, Any]]:
        """Nodegroups of a cluster; ``params``: role, limit, marker, sort_key, sort_dir."""
        return self._get_list(f"/v1/clusters/{cluster}/nodegroups", "nodegroups", params)

    def get_nodegroup(self, cluster: str, nodegroup: str) -> dict[str, Any]:
        return self._dict("GET", f"/v1/clusters/{cluster}/nodegroups/{nodegroup}")

    # ----------------------------------------------------------------- certificates

    def get_ca(self, cluster_uuid: str, ca_cert_type: str | None = None) -> dict[str, Any]:
        return self._dict("GET", f"/v1/certificates/{cluster_uuid}", params={"ca_cert_type": ca_cert_type})

    def sign_csr(self, cluster_uuid: str, csr_pem: str) -> dict[str, Any]:
        return self._dict("POST", "/v1/certificates", json={"cluster_uuid": cluster_uuid, "csr": csr_pem})

    def rotate_ca(self, cluster_uuid: str) -> dict[str, Any]:
        return self._dict("PATCH", f"/v1/certificates/{cluster_uuid}")

    # ----------------------------------------------------------------- quotas, stats, services

    def list_quotas(self, *, all_tenants: bool = False, **params: Any) -> list[dict[str, Any]]:
        if all_tenants:
            params["all_tenants"] = True
        return self._get_list("/v1/quotas", "quotas", params)

    def get_quota(self, project_id: str, resource: str) -> dict[str, Any]:
        return self._dict("GET", f"/v1/quotas/{project_id}/{resource}")

    def create_quota(self, project_id: str, resource: str, hard_limit: int) -> dict[str, Any]:
        body = {"project_id": project_id, "resource": resource, "hard_limit": hard_limit}
        return self._dict("POST", "/v1/quotas", json=body)

    def update_quota(self, project_id: str, resource: str, hard_limit: int) -> dict[str, Any]:
        body = {"project_id": project_id, "resource": resource, "hard_limit": hard_limit}
        return self._dict("PATCH", f"/v1/quotas/{project_id}/{resource}", json=body)

    def delete_quota(self, project_id: str, resource: str) -> None:
        self.request("DELETE", f"/v1/quotas/{project_id}/{resource}", expect_body=False)

    def get_stats(self, project_id: str | None = None) -> dict[str, Any]:
        return self._dict("GET", "/v1/stats", params={"project_id": project_id})

    def list_services(self) -> list[dict[str, Any]]:
        return self._get_list("/v1/mservices", "mservices")

    # ----------------------------------------------------------------- local catalog

    def list_images(self) -> list[dict[str, Any]]:
        return self._get_list("/local/v1/images", "images")

    def get_image(self, ident: str) -> dict[str, Any]:
        return self._dict("GET", f"/local/v1/images/{ident}")

    def create_image(
        self,
        name: str,
        os_distro: str,
        source: str | None,
        build_method: str | None = None,
        replace: bool = False,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "os_distro": os_distro, "replace": replace}
        if source is not None:
            body["source"] = source
        if build_method is not None:
            body["build_method"] = build_method
        return self._dict("POST", "/local/v1/images", json=body)

    def delete_image(self, ident: str) -> None:
        self.request("DELETE", f"/local/v1/images/{ident}", expect_body=False)

    def list_flavors(self) -> list[dict[str, Any]]:
        return self._get_list("/local/v1/flavors", "flavors")

    def create_flavor(self, name: str, vcpus: float, ram_mb: int) -> dict[str, Any]:
        return self._dict("POST", "/local/v1/flavors", json={"name": name, "vcpus": vcpus, "ram_mb": ram_mb})

    def delete_flavor(self, ident: str) -> None:
        self.request("DELETE", f"/local/v1/flavors/{ident}", expect_body=False)

    def list_networks(self) -> list[dict[str, Any]]:
        return self._get_list("/local/v1/networks", "networks")

    def create_network(self, name: str, *, external: bool = False) -> dict[str, Any]:
        return self._dict("POST", "/local/v1/networks", json={"name": name, "external": external})

    def list_keypairs(self) -> list[dict[str, Any]]:
        return self._get_list("/local/v1/keypairs", "keypairs")

    def get_keypair(self, name: str) -> dict[str, Any]:
        return self._dict("GET", f"/local/v1/keypairs/{name}")

    def create_keypair(self, name: str, public_key: str) -> dict[str, Any]:
        return self._dict("POST", "/local/v1/keypairs", json={"name": name, "public_key": public_key})

    def delete_keypair(self, name: str) -> None:
        self.request("DELETE", f"/local/v1/keypairs/{name}", expect_body=False)

    # ----------------------------------------------------------------- tokens

    def list_tokens(self) -> list[dict[str, Any]]:
        return self._get_list("/local/v1/tokens", "tokens")

    def revoke_token(self, ident: str | int) -> None:
        self.request("DELETE", f"/local/v1/tokens/{ident}", expect_body=False)

    def load_cluster_image(self, cluster_uuid: str, archive: bytes, name: str) -> dict[str, Any]:
        """Record an image archive (``docker save`` format) for the cluster's nodes (202)."""
        return self._dict(
            "POST", f"/local/v1/clusters/{cluster_uuid}/images", content=archive, content_type="application/x-tar",
            params={"name": name}, timeout=600,
        )  # fmt: skip

    def list_cluster_images(self, cluster_uuid: str) -> dict[str, Any]:
        return self._dict("GET", f"/local/v1/clusters/{cluster_uuid}/images")

    # ----------------------------------------------------------------- helpers

    def _dict(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        body = self.request(method, path, **kw)
        if body is None:
            return {}
        if not isinstance(body, dict):
            raise ApiError(0, f"Unexpected answer to {method} {path}: expected a JSON object.")
        return body

    # ----------------------------------------------------------------- discovery

    @classmethod
    def from_environment(
        cls,
        os_cloud: str | None = None,
        os_token: str | None = None,
        os_endpoint: str | None = None,
        data_dir: str | Path | None = None,
        *,
        api_version: str = "latest",
        timeout: float = 30,
    ) -> Client:
        """Find the endpoint and token the way the CLI documents it.

        1. ``os_token`` + ``os_endpoint`` (else env ``OS_TOKEN`` + ``OS_ENDPOINT_OVERRIDE``);
        2. ``os_cloud`` (else env ``OS_CLOUD``) looked up in ``OS_CLIENT_CONFIG_FILE``,
           ``./clouds.yaml``, ``~/.config/openstack/clouds.yaml``,
           ``/etc/openstack/clouds.yaml`` and ``DATA_DIR/clouds.yaml``;
        3. the cloud ``flotilla`` in ``DATA_DIR/clouds.yaml`` (written by ``flotilla serve``).

        A token or endpoint given explicitly overrides the one from clouds.yaml.
        Raises :class:`ApiError` (status 0) when nothing usable is found.
        """
        from flotilla.client_config import resolve_connection

        endpoint, token = resolve_connection(os_cloud, os_token, os_endpoint, data_dir)
        return cls(endpoint, token, api_version=api_version, timeout=timeout)


def _qs(value: Any) -> Any:
    if isinstance(value, bool):
        return "True" if value else "False"
    return value
