"""Pure ASGI middleware: path normalization, request ids and microversions.

* ``/clusters`` is ``/v1/clusters`` and trailing slashes are ignored (reference §1).
* Every response gets ``X-OpenStack-Request-Id``.
* ``/v1`` requests get the negotiated version in ``scope["state"]["version"]`` and the
  version headers on the response; a bad header is refused with 406 right here.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flotilla.api import microversion as mv
from flotilla.api.errors import error_body

#: First path segments that are not Magnum resources (no ``/v1`` prefix added).
#: Set by the routing-level 404/405 handler: the middleware then leaves out the microversion
#: headers (as Magnum does) and drops this marker.
FRAMEWORK_ERROR_MARK = "x-flotilla-framework-error"
FRAMEWORK_ERROR_MARK_B = FRAMEWORK_ERROR_MARK.encode()
OWN_PREFIXES = frozenset({"", "v1", "local", "dashboard", "healthcheck", "openapi.json", "docs", "static"})


class EdgeMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if (
            "\x00" in path
            or b"%00" in scope.get("query_string", b"")
            or b"\x00" in scope.get("query_string", b"")
        ):
            await _send_json(
                send,
                400,
                error_body(400, "The URL contains a NUL character, which no resource name accepts."),
                [],
            )
            return
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/") or "/"
        first = path.split("/")[1] if path != "/" else ""
        if first not in OWN_PREFIXES:
            path = "/v1" + path
        scope = dict(scope)
        scope["path"] = path
        scope["raw_path"] = path.encode()
        request_id = f"req-{uuid.uuid4()}"
        extra: list[tuple[bytes, bytes]] = [(b"x-openstack-request-id", request_id.encode())]
        state = scope.setdefault("state", {})
        state["request_id"] = request_id

        versioned: list[tuple[bytes, bytes]] = []
        if path == "/v1" or path.startswith("/v1/"):
            header = None
            accept = ""
            for k, v in scope.get("headers", []):
                if k.lower() == b"openstack-api-version":
                    header = v.decode("latin-1")
                elif k.lower() == b"accept":
                    accept = v.decode("latin-1").lower()
            if accept and not any(t in accept for t in ("json", "*/*", "application/*")):
                # JSON only (reference: Accept: application/xml gets 406).
                await _send_json(send, 406, error_body(406, "", code=""), extra)
                return
            try:
                version = mv.negotiate(header)
            except mv.Malformed:
                await _send_json(send, 406, error_body(406, "", code=""), extra)
                return
            except mv.Unsupported:
                headers = extra + [
                    (k.lower().encode(), v.encode()) for k, v in mv.response_headers(mv.MAX).items()
                ]
                await _send_json(send, 406, mv.unsupported_body(), headers)
                return
            state["version"] = version
            if path != "/v1":
                versioned = [
                    (k.lower().encode(), v.encode()) for k, v in mv.response_headers(version).items()
                ]

        legacy = _legacy_magnum_http_client(scope)

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                headers = list(message.get("headers", []))
                framework = any(k == FRAMEWORK_ERROR_MARK_B for k, _ in headers)
                kept = [(k, v) for k, v in headers if k != FRAMEWORK_ERROR_MARK_B]
                if legacy and int(message.get("status", 200)) >= 400:
                    kept = [(k, v) for k, v in kept if k.lower() != b"content-type"]
                    kept.append((b"content-type", LEGACY_ERROR_TYPE))
                message["headers"] = kept + extra + ([] if framework else versioned)
            await send(message)

        await self.app(scope, receive, send_wrapper)


#: The content type of error bodies (still the JSON error body) for the legacy client below.
LEGACY_ERROR_TYPE = b"text/plain; charset=utf-8"


def _legacy_magnum_http_client(scope: Scope) -> bool:
    """python-magnumclient's token-mode ``HTTPClient`` (``magnum --os-token ...
    --os-endpoint-override ...``, 2.x): plain ``http.client``, so ``Accept-Encoding:
    identity`` and its bare User-Agent (its keystoneauth ``SessionClient`` goes through
    requests, which asks for gzip).

    On an error whose Content-Type is application/json it calls ``resp.json()`` on an
    ``http.client.HTTPResponse`` and the user sees only ``'HTTPResponse' object has no
    attribute 'json'`` (with real Magnum too). Any other type lets it raise its proper
    exception (``Bad Request (HTTP 400)``, ``Not Found (HTTP 404)``, ...): its NotFound
    handling works and a failed command exits 1. The server's text itself cannot reach
    its output in this mode (2.17 only reads it from an application/json body), but
    ``--debug`` shows the body."""
    agent = encoding = b""
    for k, v in scope.get("headers", []):
        key = k.lower()
        if key == b"user-agent":
            agent = v
        elif key == b"accept-encoding":
            encoding = v
    return agent == b"python-magnumclient" and encoding.strip().lower() == b"identity"


async def _send_json(send: Send, status: int, body: Any, headers: list[tuple[bytes, bytes]]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
