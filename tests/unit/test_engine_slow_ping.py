"""A busy Docker Engine is not a dead one: ``Engine.revive`` must not tear down the shared
API client while other threads use it.

CI once failed two parallel Kubernetes creates with "the Docker Engine ... cannot be
reached: [Errno 9] Bad file descriptor": the health loop's 3 s ping timed out on a loaded
machine, ``revive`` closed the client every thread shares, and the requests in flight on
it died. Here a small engine stand-in on a unix socket answers ``/_ping`` slowly while a
long request is in flight.
"""

from __future__ import annotations

import http.server
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flotilla.drivers.providers.local import Engine
from flotilla.errors import Unavailable


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        delay = {"/_ping": 0.4, "/slow": 1.0}.get(self.path, 0.0)
        time.sleep(delay)
        body = b"OK" if self.path == "/_ping" else b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "text/plain" if self.path == "/_ping" else "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def slow_engine(tmp_path: Path) -> Iterator[Engine]:
    sock = tmp_path / "docker.sock"
    server = _Server(str(sock), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Engine(host=f"unix://{sock}", data_dir=tmp_path, owned=False, env={})
    finally:
        server.shutdown()
        server.server_close()


def test_a_slow_ping_keeps_the_shared_client_and_requests_in_flight(slow_engine: Engine) -> None:
    shared = slow_engine.api
    results: list[object] = []

    def long_request() -> None:
        try:
            results.append(shared.get("/slow"))
        except Exception as exc:  # the assertion below names it
            results.append(exc)

    worker = threading.Thread(target=long_request)
    worker.start()
    time.sleep(0.1)  # the request is on the wire
    revived = slow_engine.revive(quick=0.05, patience=5.0)
    worker.join(timeout=10)

    assert revived is False, "a slow engine was treated as a stopped one"
    assert results == [{"ok": True}], f"the request in flight failed: {results}"
    assert not shared._client.is_closed, "revive closed the client other threads were using"
    # Later calls get a fresh client, which works.
    assert slow_engine.api is not shared
    assert slow_engine.answers(timeout=5.0)


def test_a_dead_engine_is_still_reported(tmp_path: Path) -> None:
    engine = Engine(host=f"unix://{tmp_path / 'absent.sock'}", data_dir=tmp_path, owned=False, env={})
    with pytest.raises(Unavailable, match=r"cannot be reached|does not answer"):
        engine.revive(quick=0.05, patience=0.2)
