"""A real ``flotilla serve`` (session-wide) for the CLI tests."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
import yaml
from cli_helpers import FLOTILLA, IMAGE, START_TIMEOUT, Server, clean_env, free_port

from flotilla.drivers.providers.local import Engine


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, engine: Engine) -> Iterator[Server]:
    """On the session's Docker Engine (tests/engine_fixtures.py): one dockerd per test run."""
    root = tmp_path_factory.mktemp("flotilla-cli")
    data_dir, workdir, home = root / "data", root / "work", root / "home"
    for d in (workdir, home):
        d.mkdir()
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = (root / "server.log").open("w")
    proc = subprocess.Popen(
        [FLOTILLA, "--data-dir", str(data_dir), "serve", "--bind", f"127.0.0.1:{port}"],
        cwd=workdir,
        env=clean_env(HOME=str(home), FLOTILLA_LOCAL__DOCKER_HOST=engine.host),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        clouds = data_dir / "clouds.yaml"
        while True:
            if proc.poll() is not None:
                pytest.fail(f"flotilla serve exited {proc.returncode}:\n{(root / 'server.log').read_text()}")
            try:
                if clouds.is_file() and httpx.get(endpoint + "/", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"flotilla serve did not answer in {START_TIMEOUT} s")
            time.sleep(0.2)
        token = yaml.safe_load(clouds.read_text())["clouds"]["flotilla"]["auth"]["token"]
        srv = Server(
            data_dir=data_dir,
            endpoint=endpoint,
            token=token,
            workdir=workdir,
            home=home,
            docker_host=engine.host,
        )
        srv.run("image-create", IMAGE, "--os-distro", "fedora-atomic", "--source", "flotilla-node:hostroot")
        yield srv
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()
