"""A real ``flotilla serve`` (session-wide) for the CLI tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cli_helpers import IMAGE, START_TIMEOUT, Server, clean_env

import kube_cache
import serving
from flotilla.drivers.providers.local import Engine


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, engine: Engine) -> Iterator[Server]:
    """On the session's Docker Engine (tests/engine_fixtures.py): one dockerd per test run."""
    root = tmp_path_factory.mktemp("flotilla-cli")
    data_dir, workdir, home = root / "data", root / "work", root / "home"
    for d in (workdir, home):
        d.mkdir()
    try:
        launched = serving.launch(
            data_dir,
            clean_env(
                HOME=str(home),
                FLOTILLA_LOCAL__DOCKER_HOST=engine.host,
                **kube_cache.env_for_server(root / "kube-cache"),
            ),
            log=root / "server.log",
            cwd=workdir,
            timeout=START_TIMEOUT,
        )
    except serving.ServeFailed as exc:
        pytest.fail(str(exc))
    try:
        srv = Server(
            data_dir=data_dir,
            endpoint=launched.url,
            token=launched.token,
            workdir=workdir,
            home=home,
            docker_host=engine.host,
        )
        srv.run("image-create", IMAGE, "--os-distro", "fedora-atomic", "--source", "flotilla-node:hostroot")
        yield srv
    finally:
        launched.stop(timeout=15)
