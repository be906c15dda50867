"""The Docker Engine's HTTP API, spoken directly over the engine's socket.

The local provider's frequent calls (inspect, list, create, start, remove) go here
instead of through the ``docker`` CLI: a request costs a few milliseconds, a CLI
process 30-100 ms of start-up (more on a loaded machine), and a scale or delete makes
a dozen of them on its critical path. The CLI is still used where it is the simpler
tool (``exec``, ``logs``, image build/load/save).

Hosts: ``unix://PATH``, ``tcp://HOST:PORT`` (TLS from ``DOCKER_CERT_PATH`` when
``DOCKER_TLS_VERIFY`` is set, as the CLI does). Other schemes (``ssh://``) are refused
with a clear message.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from flotilla.errors import FlotillaError, Unavailable


class ApiError(FlotillaError):
    """The engine answered a request with an error status; ``status`` says which."""

    def __init__(self, method: str, path: str, status: int, message: str) -> None:
        super().__init__(f"docker API {method} {path}: {message or f'HTTP {status}'}")
        self.status = status
        self.message = message


def _tls_context(env: Mapping[str, str]) -> ssl.SSLContext:
    cert_dir = Path(env.get("DOCKER_CERT_PATH") or Path.home() / ".docker")
    ctx = ssl.create_default_context(cafile=str(cert_dir / "ca.pem"))
    ctx.check_hostname = False  # like the CLI: the CA pins the engine, addresses are often IPs
    ctx.load_cert_chain(str(cert_dir / "cert.pem"), str(cert_dir / "key.pem"))
    return ctx


def quoted(name: str) -> str:
    """A path segment for an object name or reference (``busybox:local`` stays readable)."""
    return quote(name, safe=":@/")


class EngineApi:
    """A thread-safe client for one engine. ``version`` pins the API version (``/v1.41``)."""

    def __init__(self, host: str, env: Mapping[str, str], version: str | None) -> None:
        self.host = host
        self._prefix = f"/v{version}" if version else ""
        if host.startswith("unix://"):
            transport = httpx.HTTPTransport(uds=host.removeprefix("unix://"))
            self._client = httpx.Client(transport=transport, base_url="http://docker", timeout=120)
        elif host.startswith("tcp://"):
            hostport = host.removeprefix("tcp://").rstrip("/")
            if env.get("DOCKER_TLS_VERIFY"):
                self._client = httpx.Client(
                    base_url=f"https://{hostport}", verify=_tls_context(env), timeout=120
                )
            else:
                self._client = httpx.Client(base_url=f"http://{hostport}", timeout=120)
        else:
            raise Unavailable(
                f"Docker Engine address {host!r} is not supported by the local provider: use unix:///PATH "
                "or tcp://HOST:PORT (with DOCKER_TLS_VERIFY/DOCKER_CERT_PATH for TLS)"
            )

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        body: object | None = None,
        timeout: float = 120.0,
    ) -> Any:
        """Send one request; return the decoded JSON (``None`` for an empty body).

        Raises ``ApiError`` for an error status, ``Unavailable`` when the engine cannot
        be reached.
        """
        try:
            r = self._client.request(
                method,
                self._prefix + path,
                params=dict(params) if params else None,
                content=json.dumps(body).encode() if body is not None else None,
                headers={"Content-Type": "application/json"} if body is not None else None,
                timeout=timeout,
            )
        except httpx.TimeoutException as exc:
            raise ApiError(method, path, 0, f"no answer within {timeout:g} s") from exc
        except httpx.TransportError as exc:
            raise Unavailable(f"the Docker Engine at {self.host} cannot be reached: {exc}") from exc
        if r.status_code >= 400:
            try:
                message = str(r.json().get("message", r.text))
            except (ValueError, AttributeError):
                message = r.text.strip()
            raise ApiError(method, path, r.status_code, message)
        if not r.content:
            return None
        try:
            return r.json()
        except ValueError:
            return r.text

    def get(self, path: str, **params: str | int) -> Any:
        return self.request("GET", path, params=params)

    def inspect(self, kind: str, name: str) -> dict[str, Any] | None:
        """``docker inspect`` of one container, network, volume or image; None when missing."""
        path = {
            "container": "/containers/{}/json",
            "network": "/networks/{}",
            "volume": "/volumes/{}",
            "image": "/images/{}/json",
        }[kind].format(quoted(name))
        try:
            found = self.request("GET", path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return found if isinstance(found, dict) else None

    def names(self, kind: str, label_filter: str) -> list[str]:
        """Names of the containers (all states), volumes or networks carrying a label filter
        (``key`` or ``key=value``)."""
        filters = json.dumps({"label": [label_filter]})
        if kind == "container":
            rows = self.get("/containers/json", all=1, filters=filters) or []
            return [str((c.get("Names") or ["/"])[0]).lstrip("/") for c in rows]
        if kind == "volume":
            rows = (self.get("/volumes", filters=filters) or {}).get("Volumes") or []
            return [str(v["Name"]) for v in rows]
        rows = self.get("/networks", filters=filters) or []
        return [str(n["Name"]) for n in rows]

    def remove(self, kind: str, name: str) -> bool:
        """Remove a container (forced, with anonymous volumes), volume or network.
        Returns False when it did not exist."""
        path, params = {
            "container": (f"/containers/{quoted(name)}", {"force": "1", "v": "1"}),
            "volume": (f"/volumes/{quoted(name)}", {"force": "1"}),
            "network": (f"/networks/{quoted(name)}", {}),
        }[kind]
        try:
            self.request("DELETE", path, params=params)
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def close(self) -> None:
        self._client.close()
