"""A tiny Docker Engine API client over TCP (TLS with the cluster's certs, or plain).

Used by COE steps to wait for daemons and read versions from the conductor's host,
the same path a user's ``docker`` CLI takes to the ``api_address``.
"""

from __future__ import annotations

import os
import ssl
import tempfile
import time
from collections.abc import Callable
from typing import Any

import httpx

from flotilla.domain import TlsMaterial


def ssl_context(tls: TlsMaterial) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=tls.ca_pem)
    ctx.check_hostname = False  # daemons are addressed by IP; the CA pins identity
    with tempfile.TemporaryDirectory(prefix="flotilla-tls-") as d:
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        fd = os.open(key, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(tls.key_pem)
        with open(cert, "w") as fh:
            fh.write(tls.cert_pem)
        ctx.load_cert_chain(cert, key)
    return ctx


def client(address: str, tls: TlsMaterial | None, timeout: float = 5.0) -> httpx.Client:
    """An httpx client for ``tcp://HOST:PORT`` (TLS when ``tls`` is given)."""
    hostport = address.removeprefix("tcp://")
    if tls is not None:
        return httpx.Client(base_url=f"https://{hostport}", verify=ssl_context(tls), timeout=timeout)
    return httpx.Client(base_url=f"http://{hostport}", timeout=timeout)


def version(address: str, tls: TlsMaterial | None, timeout: float = 5.0) -> dict[str, Any]:
    with client(address, tls, timeout) as c:
        r = c.get("/version")
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data


def wait_ready(
    address: str,
    tls: TlsMaterial | None,
    *,
    timeout: float = 60.0,
    what: str = "daemon",
    tick: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Poll ``/version`` until it answers; raises TimeoutError naming ``what`` and the last error.

    ``tick`` is called between attempts with the elapsed time (it may raise to abort).
    """
    started = time.monotonic()
    deadline = time.monotonic() + timeout
    last = "no answer"
    ctx_client = client(address, tls, timeout=2.0)
    try:
        while True:
            try:
                r = ctx_client.get("/version")
                if r.status_code == 200:
                    data: dict[str, Any] = r.json()
                    return data
                last = f"HTTP {r.status_code}"
            except (httpx.HTTPError, ssl.SSLError, OSError) as exc:
                last = str(exc) or type(exc).__name__
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} at {address} did not answer within {timeout:.0f} s ({last})")
            if tick is not None:
                tick(f"{time.monotonic() - started:.0f} s")
            time.sleep(0.05)
    finally:
        ctx_client.close()
