"""A token revoked through one ``flotilla serve`` process stops working in another process
on the same SQLite file within ``token_cache_seconds``, even while the other process
is answering that token continuously (so its cache keeps refreshing the entry ahead of
its end, see ``flotilla.api.token_cache``).

The bound is checked without timing the server: a request *sent* more than
``token_cache_seconds`` after the revocation's answer arrived is decided later still,
so it must be refused whatever the machine's load. Real processes (tests/serving.py),
stopped by pid.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import serving

TTL = 2.0


@pytest.fixture
def two_servers(tmp_path: Path) -> Iterator[tuple[serving.Launched, serving.Launched]]:
    env = serving.clean_env(FLOTILLA_LOG_LEVEL="WARNING", FLOTILLA_TOKEN_CACHE_SECONDS=str(TTL))
    data = tmp_path / "data"
    first = serving.launch(data, env, log=tmp_path / "first.log", timeout=180, extra_args=["--no-conductor"])
    try:
        second = serving.launch(
            data, env, log=tmp_path / "second.log", timeout=180, extra_args=["--no-conductor"]
        )
        try:
            yield first, second
        finally:
            second.stop()
    finally:
        first.stop()


def _member_token(data_dir: Path) -> str:
    out = subprocess.run(
        [serving.FLOTILLA, "--data-dir", str(data_dir), "token-create", "--project", "p", "--user", "u",
         "--role", "member"],
        capture_output=True, text=True, check=True, env=serving.clean_env(),
    )  # fmt: skip
    return out.stdout.strip().splitlines()[0]


def test_a_token_revoked_in_one_process_ends_in_a_busy_other(
    two_servers: tuple[serving.Launched, serving.Launched],
) -> None:
    busy, revoker = two_servers
    token = _member_token(busy.data_dir)
    headers = {"X-Auth-Token": token}
    sent: list[tuple[float, int]] = []  # (time sent, status)
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=busy.url, headers=headers, timeout=60) as client:
            while not stop.is_set():
                at = time.monotonic()
                sent.append((at, client.get("/v1/clusters").status_code))

    thread = threading.Thread(target=hammer, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while sum(1 for _, code in sent if code == 200) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sent and all(code == 200 for _, code in sent), sent[:5]
        with httpx.Client(base_url=revoker.url, headers=headers, timeout=60) as client:
            (mine,) = client.get("/local/v1/tokens").json()["tokens"]
            assert client.delete(f"/local/v1/tokens/{mine['id']}").status_code == 204
            revoked = time.monotonic()
            assert client.get("/v1/clusters").status_code == 401  # at once where it was revoked
        bound = revoked + TTL
        deadline = time.monotonic() + 120
        while sum(1 for at, _ in sent if at > bound) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(60)
    after = [code for at, code in sent if at > bound]
    assert len(after) >= 20
    assert set(after) == {401}, f"accepted {after.count(200)} of {len(after)} requests past the bound"
    assert {code for _, code in sent} <= {200, 401}
