"""Pure ASGI middleware: the edge checks, path normalization, request ids and microversions.

* A URL that is not UTF-8 once percent-decoded, or holds a NUL, is refused with 400; a
  body over ``max_body_bytes`` with 413 (before any route runs). Both in Magnum's body.

* ``/clusters`` is ``/v1/clusters`` and trailing slashes are ignored (reference §1).
* Every response gets ``X-OpenStack-Request-Id``.
* ``/v1`` requests get the negotiated version in ``scope["state"]["version"]`` and the
  version headers on the response; a bad header is refused with 406 right here.
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flotilla import safetext
from flotilla.api import microversion as mv
from flotilla.api.errors import error_body

#: First path segments that are not Magnum resources (no ``/v1`` prefix added).
#: Set by the routing-level 404/405 handler: the middleware then leaves out the microversion
#: headers (as Magnum does) and drops this marker.
FRAMEWORK_ERROR_MARK = "x-flotilla-framework-error"
FRAMEWORK_ERROR_MARK_B = FRAMEWORK_ERROR_MARK.encode()
OWN_PREFIXES = frozenset({"", "v1", "local", "dashboard", "healthcheck", "openapi.json", "docs", "static"})


#: The default request body limit (``Settings.max_request_body_bytes``).
DEFAULT_MAX_BODY = 1024 * 1024


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int = DEFAULT_MAX_BODY) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        problem = url_problem(scope)
        if problem is not None:
            await _send_json(send, 400, error_body(400, problem), [])
            return
        if _declared_length(scope) > self.max_body_bytes:
            await _send_json(send, 413, error_body(413, self._too_large()), [])
            return
        body = await _read_body(receive, self.max_body_bytes)
        if body is None:
            await _send_json(send, 413, error_body(413, self._too_large()), [])
            return
        receive = _replay(body, receive)
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

    def _too_large(self) -> str:
        return (
            f"Request is too large: the body may have at most {self.max_body_bytes} bytes "
            "(the operator sets max_request_body_bytes)."
        )


def url_problem(scope: Scope) -> str | None:
    """Why the URL is refused: not UTF-8 once percent-decoded (an encoded lone surrogate is
    not UTF-8 either), or a NUL. None when it is fine."""
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
    query: bytes = scope.get("query_string", b"")
    for part, raw in (("path", raw_path), ("query string", query.replace(b"+", b" "))):
        try:
            text = unquote_to_bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            return f"The URL {part} is not valid UTF-8 once percent-decoded, which no resource name accepts."
        what = safetext.char_problem(text)
        if what is not None:
            return f"The URL {part} contains {what}, which no resource name accepts."
    return None


def _declared_length(scope: Scope) -> int:
    for k, v in scope.get("headers", []):
        if k.lower() == b"content-length":
            try:
                return int(v)
            except ValueError:
                return 0
    return 0


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None once it passes ``limit`` bytes (read no further)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # the client went away; the app sees an empty body
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the buffered body, then defers to the server."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


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
