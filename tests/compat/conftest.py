"""Compatibility tests: the REAL OpenStack clients, unchanged, against a real Flotilla server.

Clients (built by ``scripts/setup-compat.sh``, pinned in ``scripts/compat-constraints.txt``):

* ``.venv-magnum217/bin/magnum``: the legacy shell from python-magnumclient 2.17.0.
* ``.venv-osc/bin/openstack``: python-openstackclient with python-magnumclient 5.0.0.

Without them the tests are skipped, or fail when ``CI`` is set.

Server: ``flotilla --data-dir DIR serve --bind 127.0.0.1:PORT`` started once per session as
a subprocess on a free port with a temp data dir (default token auth; clusters on the
in-memory ``fake`` provider), stopped by its pid at the end. The image
``fedora-atomic-latest`` and the admin's keypair ``testkey`` are registered through
``/local/v1``. A second server with ``FLOTILLA_MAX_LIMIT=2`` serves the paging tests.

How each client authenticates here (what works with these client versions):

* Legacy ``magnum``, token mode: ``--os-token T --os-endpoint-override http://HOST:PORT/v1``.
  Plain HTTP, no Keystone. In this mode 2.17 cannot read any JSON error body: it prints
  ``ERROR: b"'HTTPResponse' object has no attribute 'json'"`` (real Magnum gets the same),
  so error texts are checked from the ``--debug`` log, which shows the raw response.
* Legacy ``magnum --os-cloud flotilla`` does NOT work with the server's clouds.yaml:
  ``magnumclient.v1.client.Client`` has ``auth_type='password'`` as a default argument and
  passes it to os-client-config, which overrides the cloud's ``auth_type: admin_token``;
  the password plugin then needs ``auth_url`` (a Keystone). Its session mode therefore
  needs a real Keystone and is not covered here (see ``test_os_cloud_needs_keystone``).
* ``openstack --os-cloud flotilla`` with ``OS_CLIENT_CONFIG_FILE=DIR/clouds.yaml`` works
  as written by the server (``auth_type: admin_token``, ``auth: {token, endpoint}``).
  Without a clouds.yaml the same is ``--os-auth-type admin_token --os-token T
  --os-endpoint http://HOST:PORT/v1``, used here for tokens of other users.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

import kube_cache
import serving

REPO = Path(__file__).resolve().parents[2]
MAGNUM = REPO / ".venv-magnum217" / "bin" / "magnum"
OPENSTACK = REPO / ".venv-osc" / "bin" / "openstack"
IMAGE = "fedora-atomic-latest"
KEYPAIR = "testkey"
# Clusters/bays run on the in-memory "fake" provider: these tests are about the API the
# clients see, not about real nodes (tests/e2e covers those).
SERVER_ENV = {"FLOTILLA_ENABLED_PROVIDERS": '["fake"]', "FLOTILLA_DEFAULT_PROVIDER": "fake"}
CLI_TIMEOUT = 120  # seconds for one client command

# A Python traceback in client output means the client crashed (outside --debug).
TRACEBACK = "Traceback (most recent call last)"
# The legacy shell prints these warnings on stdout, before the command's own output.
_DEPRECATION = re.compile(r"^(WARNING: .* deprecated|Use (the OpenStack client|cluster commands) to avoid)")
# What 2.17 prints in token mode for every JSON error body (see the module docstring).
TOKEN_MODE_ERROR = "'HTTPResponse' object has no attribute 'json'"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _require(path: Path, what: str) -> None:
    if path.exists():
        return
    msg = f"{what} not found at {path}: run scripts/setup-compat.sh"
    if _in_ci():
        pytest.fail(f"CI is set but {msg}")
    pytest.skip(msg)


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment for a client: no inherited OS_* or FLOTILLA_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "FLOTILLA_"))}
    env.setdefault("SHELL", "/bin/bash")  # the config commands read $SHELL
    env["PYTHONWARNINGS"] = "ignore"  # old clients on new Pythons: keep stderr to the point
    env.update(extra)
    return env


# --------------------------------------------------------------------------- server


@dataclass
class Server:
    url: str  # http://127.0.0.1:PORT
    token: str  # the admin token from clouds.yaml
    data_dir: Path
    proc: subprocess.Popen[bytes]
    log: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        return f"{self.url}/v1"

    @property
    def clouds_yaml(self) -> Path:
        return self.data_dir / "clouds.yaml"

    def http(self, token: str | None = None) -> httpx.Client:
        """A plain HTTP client for setup steps (the clients under test do the real work)."""
        return httpx.Client(
            base_url=self.url,
            headers={"X-Auth-Token": token or self.token, "OpenStack-API-Version": "container-infra latest"},
            timeout=30,
        )

    def token_create(self, project: str, user: str, role: str) -> str:
        out = subprocess.run(
            [
                serving.FLOTILLA,
                "--data-dir",
                str(self.data_dir),
                "token-create",
                "--project",
                project,
                "--user",
                user,
                "--role",
                role,
            ],
            env=_clean_env(**self.extra_env),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return out.stdout.strip().splitlines()[-1].strip()

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no server log)"


def _public_key() -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return (
        key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
        + " compat"
    )


def _start(data_dir: Path, extra_env: dict[str, str]) -> Server:
    if not Path(serving.FLOTILLA).exists():
        pytest.fail(f"{serving.FLOTILLA} not found: run scripts/setup.sh")
    try:
        launched = serving.launch(
            data_dir, _clean_env(**extra_env), log=data_dir / "server.log", cwd=data_dir
        )
    except serving.ServeFailed as exc:
        pytest.fail(str(exc))
    server = Server(
        url=launched.url, token=launched.token, data_dir=data_dir, proc=launched.proc, log=launched.log,
        extra_env=extra_env,
    )  # fmt: skip
    try:
        with server.http() as http:
            r = http.post(
                "/local/v1/images",
                json={"name": IMAGE, "os_distro": "fedora-atomic", "source": "flotilla-node:latest"},
            )
            assert r.status_code == 201, f"image registration: {r.status_code} {r.text}"
            # the guide's `--keypair-id testkey`: bay/cluster create checks it exists
            r = http.post("/local/v1/keypairs", json={"name": KEYPAIR, "public_key": _public_key()})
            assert r.status_code == 201, f"keypair registration: {r.status_code} {r.text}"
    except BaseException:
        launched.stop()
        raise
    return server


@contextlib.contextmanager
def running_server(tmp_path_factory: pytest.TempPathFactory, name: str, **extra_env: str) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp(name)
    server = _start(data_dir, {**SERVER_ENV, **extra_env})
    try:
        yield server
    finally:
        died = server.proc.poll()
        serving.stop(server.proc)
        if died is None:
            shutil.rmtree(data_dir, ignore_errors=True)
    if died is not None:  # kept: the data dir and log show what happened
        pytest.fail(
            f"flotilla serve exited during the tests (code {died}); {server.log}:\n{server.log_tail()}"
        )


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The session's Flotilla server (SQLite, token auth, fake provider), image and keypair registered.

    Kubernetes templates validate against the real kube build cache when it is built, else
    against a stand-in (tests/kube_cache.py); ``kube_version`` is the version it names."""
    kube_env = kube_cache.env_for_server(tmp_path_factory.mktemp("kube-cache"))
    with running_server(tmp_path_factory, "flotilla-compat", **kube_env) as s:
        yield s


@pytest.fixture(scope="session")
def kube_version(server: Server) -> str:
    """The Kubernetes version the session's server accepts in ``kube_tag``."""
    return kube_cache.version_of(server.extra_env)


@pytest.fixture(scope="session")
def small_page_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A second server whose pages hold at most 2 items (max_limit), to exercise `next`."""
    with running_server(tmp_path_factory, "flotilla-compat-pages", FLOTILLA_MAX_LIMIT="2") as s:
        yield s


@pytest.fixture(scope="module")
def paused_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A fake-provider server whose conductor is off: a test finishes a cluster's create itself
    (tests/seed_cluster.py) to get a CREATE_COMPLETE cluster without running its COE steps."""
    kube_env = kube_cache.env_for_server(tmp_path_factory.mktemp("kube-cache"))
    with running_server(
        tmp_path_factory, "flotilla-compat-paused", FLOTILLA_CONDUCTOR__ENABLED="false", **kube_env
    ) as s:
        yield s


@pytest.fixture(scope="module")
def engine_server(
    tmp_path_factory: pytest.TempPathFactory, engine: Any, hostroot_image: str
) -> Iterator[Server]:
    """A server whose clusters run on the session's real Docker Engine (local provider), the
    guide's image name pointing at the engine's node image. ``engine`` comes from
    tests/engine_fixtures.py."""
    env = {
        "FLOTILLA_ENABLED_PROVIDERS": '["local"]',
        "FLOTILLA_DEFAULT_PROVIDER": "local",
        "FLOTILLA_LOCAL__DOCKER_HOST": engine.host,
    }
    with running_server(tmp_path_factory, "flotilla-compat-engine", **env) as srv:
        with srv.http() as http:
            r = http.post(
                "/local/v1/images",
                json={"name": IMAGE, "os_distro": "fedora-atomic", "source": hostroot_image, "replace": True},
            )
            assert r.status_code == 201, r.text
        yield srv


# --------------------------------------------------------------------------- output parsing

_ROW = re.compile(r"^\|(.*)\|\s*$")


@pytest.fixture(scope="module")
def guide_server(
    tmp_path_factory: pytest.TempPathFactory, engine: Any, hostroot_image: str
) -> Iterator[Server]:
    """Clusters on the session's engine; the node image registered as ``flotilla-node`` only
    (no image named fedora-atomic-latest: the guide's name must find it by itself); health
    checked every second so auto-healing acts within seconds."""
    env = {
        "FLOTILLA_ENABLED_PROVIDERS": '["local"]', "FLOTILLA_DEFAULT_PROVIDER": "local",
        "FLOTILLA_LOCAL__DOCKER_HOST": engine.host, "FLOTILLA_CONDUCTOR__HEALTH_INTERVAL": "1",
        "FLOTILLA_CONDUCTOR__HEALTH_GRACE": "2",
    }  # fmt: skip
    with running_server(tmp_path_factory, "flotilla-compat-guide", **env) as srv:
        with srv.http() as http:
            assert http.delete("/local/v1/images/fedora-atomic-latest").status_code == 204
            r = http.post("/local/v1/images", json={"name": "flotilla-node", "os_distro": "debian",
                                                    "source": hostroot_image})  # fmt: skip
            assert r.status_code == 201, r.text
        yield srv


@pytest.fixture(scope="module")
def kube_server(tmp_path_factory: pytest.TempPathFactory, engine: Any) -> Iterator[Server]:
    """Clusters on the session's engine; the guide's image name stands for a node image
    that carries the Kubernetes build (what ``flotilla image-build --kubernetes yes`` makes)."""
    from flotilla.drivers.coe.kubernetes import artifacts, labels
    from flotilla.drivers.providers.local.images import build_hostroot_image

    build = kube_cache.require_real_build()
    kubectl = Path(sys.executable).with_name("kubectl")
    if not kubectl.exists():
        pytest.fail(f"kubectl not found at {kubectl}: run scripts/setup.sh")
    tag = build_hostroot_image(
        engine, "flotilla-node:kube", extras={artifacts.NODE_DIR: build.directory},
        labels={artifacts.IMAGE_LABEL: build.version},
    )  # fmt: skip
    env = {
        "FLOTILLA_ENABLED_PROVIDERS": '["local"]', "FLOTILLA_DEFAULT_PROVIDER": "local",
        "FLOTILLA_LOCAL__DOCKER_HOST": engine.host, labels.CACHE_ENV: str(labels.cache_dir()),
    }  # fmt: skip
    with running_server(tmp_path_factory, "flotilla-compat-k8s", **env) as srv:
        with srv.http() as http:
            assert http.delete("/local/v1/images/fedora-atomic-latest").status_code == 204
            r = http.post("/local/v1/images", json={"name": "flotilla-node", "os_distro": "fedora-atomic",
                                                    "source": tag})  # fmt: skip
            assert r.status_code == 201, r.text
        yield srv


def parse_table(text: str) -> list[list[str]]:
    """Rows of the first PrettyTable in ``text`` (header row included), cells stripped."""
    rows: list[list[str]] = []
    for line in text.splitlines():
        m = _ROW.match(line.strip())
        if m:
            rows.append([c.strip() for c in m.group(1).split("|")])
    return rows


def parse_props(text: str) -> dict[str, str]:
    """A ``| Property | Value |`` table as a dict (wrapped continuation rows are joined)."""
    props: dict[str, str] = {}
    last = None
    for row in parse_table(text)[1:]:
        if len(row) != 2:
            continue
        key, value = row
        if key:
            props[key] = value
            last = key
        elif last is not None:
            props[last] += value
    return props


def parse_list(text: str) -> list[dict[str, str]]:
    """A list table (header row first) as a list of dicts."""
    rows = parse_table(text)
    if not rows:
        return []
    header = rows[0]
    return [dict(zip(header, r, strict=True)) for r in rows[1:] if len(r) == len(header)]


_STATUS = re.compile(r"^HTTP/1\.[01] (\d{3})", re.M)


def debug_error(result: Result) -> tuple[int, dict[str, Any]]:
    """From a ``--debug`` run: the last response's status and its ``errors[0]`` object."""
    statuses = _STATUS.findall(result.stderr)
    assert statuses, f"no HTTP response in the debug log:\n{result}"
    bodies = [line for line in result.stderr.splitlines() if line.startswith('{"errors"')]
    assert bodies, f"no JSON error body in the debug log:\n{result}"
    return int(statuses[-1]), json.loads(bodies[-1])["errors"][0]


# --------------------------------------------------------------------------- clients


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def lines(self) -> list[str]:
        """stdout lines other than the 2.17 shell's deprecation warnings (printed to stdout)."""
        return [ln for ln in self.stdout.splitlines() if not _DEPRECATION.match(ln)]

    def __str__(self) -> str:
        return f"$ {' '.join(self.args)}\n-> exit {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"

    def ok(self) -> Result:
        assert self.returncode == 0, f"command failed:\n{self}"
        assert TRACEBACK not in self.output, f"client printed a traceback:\n{self}"
        return self

    def failed(self) -> Result:
        """A clean failure: non-zero exit, a message, no Python traceback."""
        assert self.returncode != 0, f"command should have failed:\n{self}"
        assert TRACEBACK not in self.output, f"client crashed with a traceback:\n{self}"
        assert self.stderr.strip(), f"no error message:\n{self}"
        return self

    def json(self) -> Any:
        return json.loads(self.stdout)

    def props(self) -> dict[str, str]:
        """The ``| Property | Value |`` table printed by show/create/update, as a dict."""
        return parse_props(self.stdout)

    def rows(self) -> list[dict[str, str]]:
        """The list table printed by ``*-list``, as dicts keyed by the header."""
        return parse_list(self.stdout)

    def http_error(self) -> tuple[int, dict[str, Any]]:
        """For a ``--debug`` run: the last response's status and its ``errors[0]`` object."""
        return debug_error(self)


def _run(argv: list[str], env: dict[str, str], server: Server) -> Result:
    started = time.monotonic()
    try:
        proc = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT, cwd=REPO, check=False
        )
    except subprocess.TimeoutExpired as e:
        # a hung request: report it as a failed command, with what the server was doing
        def text(b: bytes | str | None) -> str:
            return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")

        note = f"\nTIMEOUT: no exit after {time.monotonic() - started:.0f}s; server log tail:\n{server.log_tail()}"
        return Result(argv, -1, text(e.stdout), text(e.stderr) + note)
    return Result(argv, proc.returncode, proc.stdout, proc.stderr)


Magnum = Callable[..., Result]


@pytest.fixture(scope="session")
def magnum_bin() -> Path:
    _require(MAGNUM, "the legacy magnum client (python-magnumclient 2.17.0)")
    return MAGNUM


@pytest.fixture(scope="session")
def openstack_bin() -> Path:
    _require(OPENSTACK, "the openstack client (python-openstackclient + python-magnumclient 5.0.0)")
    return OPENSTACK


@pytest.fixture(scope="session")
def magnum(magnum_bin: Path, server: Server) -> Magnum:
    """Run the legacy ``magnum`` shell in token mode: ``magnum("baymodel-list").ok()``.

    ``token=`` runs as another user, ``server=`` against another server, ``debug=True``
    adds ``--debug`` (which logs each request and raw response, and tracebacks on errors).
    """

    def run(*args: str, token: str | None = None, on: Server | None = None, debug: bool = False) -> Result:
        srv = on or server
        argv = [str(magnum_bin)]
        if debug:
            argv.append("--debug")
        argv += ["--os-token", token or srv.token, "--os-endpoint-override", srv.endpoint, *args]
        return _run(argv, _clean_env(), srv)

    return run


@pytest.fixture(scope="session")
def magnum_env(server: Server, magnum_bin: Path) -> dict[str, str]:
    """Environment for shell pipelines: ``$MAGNUM`` is the full token-mode command prefix."""
    prefix = " ".join(
        [str(magnum_bin), "--os-token", server.token, "--os-endpoint-override", server.endpoint]
    )
    return _clean_env(MAGNUM=prefix)


Openstack = Callable[..., Result]


@pytest.fixture(scope="session")
def openstack(openstack_bin: Path, server: Server) -> Openstack:
    """Run ``openstack --os-cloud flotilla ...`` with the server's own clouds.yaml.

    ``token=`` instead authenticates with ``--os-auth-type admin_token`` flags (no clouds.yaml).
    """

    def run(*args: str, token: str | None = None, debug: bool = False, on: Server | None = None) -> Result:
        srv = on or server
        argv = [str(openstack_bin)]
        if debug:
            argv.append("--debug")
        if token is None:
            argv += ["--os-cloud", "flotilla"]
            env = _clean_env(OS_CLIENT_CONFIG_FILE=str(srv.clouds_yaml))
        else:
            argv += ["--os-auth-type", "admin_token", "--os-token", token, "--os-endpoint", srv.endpoint]
            env = _clean_env(OS_CLIENT_CONFIG_FILE=os.devnull)
        return _run([*argv, *args], env, srv)

    return run
