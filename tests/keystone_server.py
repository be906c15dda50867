"""A real OpenStack Keystone for tests, run from its own virtualenv.

``scripts/setup-keystone.sh`` installs Keystone (and the ``waitress`` WSGI server) into
``.venv-keystone``; :func:`start_keystone` then builds a throw-away deployment in a temp
dir (SQLite database, fernet and credential keys, ``keystone-manage bootstrap``) and
serves Keystone's own WSGI application from a **subprocess** on a free loopback port, so
nothing of Keystone is imported into the test process.

    server = start_keystone()
    try:
        project_id = server.create_project("demo")
        server.create_user("alice", "secret", project_id, "member")
        token = server.get_token("alice", "secret", "demo")
    finally:
        server.stop()

The listening socket is bound here and handed to the child (``pass_fds``), so the port
cannot be taken by someone else between picking it and serving on it.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
#: Where ``scripts/setup-keystone.sh`` puts Keystone; override with ``FLOTILLA_KEYSTONE_VENV``.
KEYSTONE_VENV = Path(os.environ.get("FLOTILLA_KEYSTONE_VENV") or ROOT / ".venv-keystone")

ADMIN_USER = "admin"
ADMIN_PROJECT = "admin"
REGION = "RegionOne"
DEFAULT_DOMAIN = "default"

# Run inside the child: Keystone's WSGI factory parses sys.argv with oslo.config, so it
# must not see ours; the socket arrives as an inherited file descriptor.
_SERVE_PY = textwrap.dedent(
    """
    import socket
    import sys

    fd = int(sys.argv[1])
    sys.argv = [sys.argv[0]]

    from keystone.server import wsgi

    application = wsgi.initialize_public_application()

    import waitress

    sock = socket.socket(fileno=fd)
    print("keystone: serving on %s:%s" % sock.getsockname()[:2], flush=True)
    waitress.serve(application, sockets=[sock], threads=4, ident="keystone", expose_tracebacks=True)
    """
)

_CONF = """\
[DEFAULT]
debug = false
use_stderr = true

[database]
connection = sqlite:///{workdir}/keystone.db

[token]
provider = fernet
expiration = 3600

[fernet_tokens]
key_repository = {workdir}/fernet-keys

[fernet_receipts]
key_repository = {workdir}/fernet-keys

[credential]
key_repository = {workdir}/credential-keys

[identity]
# bcrypt's minimum cost: this Keystone only ever holds throw-away test passwords.
password_hash_rounds = 4

[cache]
enabled = false
"""


class KeystoneError(RuntimeError):
    """Keystone could not be set up, started, or refused a test-helper call."""


def keystone_installed(venv: Path = KEYSTONE_VENV) -> bool:
    return (venv / "bin" / "keystone-manage").is_file() and (venv / "bin" / "python").is_file()


@dataclass
class KeystoneServer:
    """One running Keystone; ``url`` is its ``/v3`` endpoint (public, internal and admin)."""

    url: str
    admin_password: str
    workdir: Path
    process: subprocess.Popen[bytes]
    venv: Path
    startup_seconds: float
    _admin_token: str | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def log_path(self) -> Path:
        return self.workdir / "keystone.log"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """Kill the server (by its pid) and remove its temp dir; safe to call twice."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def clone(self, timeout: float = 120.0) -> KeystoneServer:
        """A second, independent Keystone with a copy of this one's data and keys (so the
        same users, and tokens valid on both) on its own port; much quicker than
        :func:`start_keystone`. Stopping either leaves the other running."""
        source_db = self.workdir / "keystone.db"
        old_url = self.url

        def prepare(workdir: Path, conf: Path, log: Path, url: str) -> list[_Step]:
            for sub in ("fernet-keys", "credential-keys"):
                shutil.rmtree(workdir / sub)
                shutil.copytree(self.workdir / sub, workdir / sub)
            src = sqlite3.connect(source_db)
            dst = sqlite3.connect(workdir / "keystone.db")
            try:
                src.backup(dst)  # consistent even while the source server writes
                with dst:
                    dst.execute("UPDATE endpoint SET url = ? WHERE url = ?", (url, old_url))
            finally:
                src.close()
                dst.close()
            return []

        return _launch(self.venv, self.admin_password, timeout, prepare)

    # -- tokens ---------------------------------------------------------------------------

    def get_token(
        self,
        username: str,
        password: str,
        project_name: str | None = None,
        *,
        domain: str = DEFAULT_DOMAIN,
        system: bool = False,
    ) -> str:
        """Password-authenticate and return the token (``X-Subject-Token``).

        Scoped to ``project_name`` (in ``domain``), to the system when ``system``, else unscoped.
        """
        auth: dict[str, Any] = {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": username, "domain": {"id": domain}, "password": password}},
            }
        }
        if system:
            auth["scope"] = {"system": {"all": True}}
        elif project_name is not None:
            auth["scope"] = {"project": {"name": project_name, "domain": {"id": domain}}}
        resp = httpx.post(f"{self.url}/auth/tokens", json={"auth": auth}, timeout=30)
        if resp.status_code != 201:
            raise KeystoneError(f"token for {username!r} refused: {resp.status_code} {resp.text}")
        return resp.headers["X-Subject-Token"]

    def admin_token(self) -> str:
        """A system-scoped admin token (cached) for the helpers below."""
        if self._admin_token is None:
            self._admin_token = self.get_token(ADMIN_USER, self.admin_password, system=True)
        return self._admin_token

    def revoke_token(self, token: str) -> None:
        resp = httpx.delete(
            f"{self.url}/auth/tokens",
            headers={"X-Auth-Token": self.admin_token(), "X-Subject-Token": token},
            timeout=30,
        )
        self._check(resp, 204, "revoke token")

    # -- resources ------------------------------------------------------------------------

    def _api(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return httpx.request(
            method,
            f"{self.url}{path}",
            json=body,
            headers={"X-Auth-Token": self.admin_token()},
            timeout=30,
        )

    @staticmethod
    def _check(resp: httpx.Response, expected: int, what: str) -> None:
        if resp.status_code != expected:
            raise KeystoneError(f"{what}: {resp.status_code} {resp.text}")

    def role_id(self, name: str) -> str:
        resp = self._api("GET", f"/roles?name={name}")
        self._check(resp, 200, f"find role {name!r}")
        roles = resp.json()["roles"]
        if roles:
            return str(roles[0]["id"])
        resp = self._api("POST", "/roles", {"role": {"name": name}})
        self._check(resp, 201, f"create role {name!r}")
        return str(resp.json()["role"]["id"])

    def create_project(self, name: str, *, domain: str = DEFAULT_DOMAIN) -> str:
        """Create a project; returns its id."""
        resp = self._api("POST", "/projects", {"project": {"name": name, "domain_id": domain}})
        self._check(resp, 201, f"create project {name!r}")
        return str(resp.json()["project"]["id"])

    def create_user(
        self,
        name: str,
        password: str,
        project_id: str | None = None,
        role: str | None = "member",
        *,
        domain: str = DEFAULT_DOMAIN,
    ) -> str:
        """Create a user, granting ``role`` (member/reader/admin/service/...) on the project."""
        resp = self._api(
            "POST", "/users", {"user": {"name": name, "password": password, "domain_id": domain}}
        )
        self._check(resp, 201, f"create user {name!r}")
        user_id = str(resp.json()["user"]["id"])
        if project_id is not None and role is not None:
            self.grant(user_id, project_id, role)
        return user_id

    def grant(self, user_id: str, project_id: str, role: str) -> None:
        resp = self._api("PUT", f"/projects/{project_id}/users/{user_id}/roles/{self.role_id(role)}")
        self._check(resp, 204, f"grant {role!r}")

    def create_service_user(
        self, name: str = "magnum", password: str = "magnum-secret", project: str = "service"
    ) -> tuple[str, str, str]:
        """The account a service validates tokens with: ``service`` role on a ``service``
        project, as a deployment would set it up. Returns (username, password, project)."""
        resp = self._api("GET", f"/projects?name={project}")
        self._check(resp, 200, f"find project {project!r}")
        found = resp.json()["projects"]
        project_id = str(found[0]["id"]) if found else self.create_project(project)
        self.create_user(name, password, project_id, "service")
        return name, password, project


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "PYTHON", "VIRTUAL_ENV"))}
    env["PYTHONWARNINGS"] = "ignore"
    env["PYTHONUNBUFFERED"] = "1"
    return env


_Step = tuple[str, "subprocess.Popen[bytes]"]


def _manage(venv: Path, conf: Path, log: Path, *args: str) -> _Step:
    """Start one ``keystone-manage`` step, its output going to its own log next to ``log``."""
    step_log = log.with_name(f"manage-{args[0]}.log")
    with step_log.open("wb") as out:
        return args[0], subprocess.Popen(
            [str(venv / "bin" / "keystone-manage"), "--config-file", str(conf), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=_child_env(),
        )


def _kill_steps(steps: list[_Step]) -> None:
    for _, proc in steps:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _wait_manage(steps: list[_Step], log: Path, timeout: float) -> None:
    """Wait for the steps; raise with the failed step's output if one failed."""
    for step, proc in steps:
        try:
            code = proc.wait(timeout=max(1.0, timeout))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = None
        step_log = log.with_name(f"manage-{step}.log")
        with log.open("ab") as out:  # keep one log for the curious
            out.write(f"$ keystone-manage {step}\n".encode() + step_log.read_bytes())
        if code != 0:
            tail = "\n".join(step_log.read_text(errors="replace").splitlines()[-30:])
            raise KeystoneError(f"keystone-manage {step} failed (exit {code}):\n{tail}")


def _new_workdir() -> tuple[Path, Path, Path]:
    """A temp dir with keystone.conf, empty key dirs and a log; returns (dir, conf, log)."""
    workdir = Path(tempfile.mkdtemp(prefix="flotilla-keystone-"))
    for sub in ("fernet-keys", "credential-keys"):
        (workdir / sub).mkdir(mode=0o700)
    conf = workdir / "keystone.conf"
    conf.write_text(_CONF.format(workdir=workdir))
    log = workdir / "keystone.log"
    log.touch()
    (workdir / "serve.py").write_text(_SERVE_PY)
    return workdir, conf, log


def _serve(venv: Path, workdir: Path, log: Path, sock: socket.socket) -> subprocess.Popen[bytes]:
    env = _child_env()
    env["OS_KEYSTONE_CONFIG_DIR"] = str(workdir)
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(venv / "bin" / "python"), str(workdir / "serve.py"), str(sock.fileno())],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=workdir,
            pass_fds=(sock.fileno(),),
            start_new_session=True,
        )


def _launch(
    venv: Path,
    admin_password: str,
    timeout: float,
    prepare: Callable[[Path, Path, Path, str], list[_Step]],
) -> KeystoneServer:
    """Make a workdir, let ``prepare(workdir, conf, log, url)`` fill it (it may return
    still-running ``keystone-manage`` steps, awaited while the server starts), serve it,
    and wait until ``GET /v3`` answers. Cleans everything up on failure."""
    started = time.monotonic()
    deadline = started + timeout
    workdir, conf, log = _new_workdir()
    sock: socket.socket | None = None
    proc: subprocess.Popen[bytes] | None = None
    steps: list[_Step] = []
    try:
        sock = _free_socket()
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/v3"
        steps = prepare(workdir, conf, log, url)
        proc = _serve(venv, workdir, log, sock)
        sock.close()
        sock = None
        server = KeystoneServer(
            url=url,
            admin_password=admin_password,
            workdir=workdir,
            process=proc,
            venv=venv,
            startup_seconds=0.0,
        )
        _wait_manage(steps, log, deadline - time.monotonic())
        while True:
            if proc.poll() is not None:
                raise KeystoneError(f"keystone exited with {proc.returncode}:\n{server.log_tail()}")
            try:
                if httpx.get(url, timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise KeystoneError(
                    f"keystone did not answer on {url} in {timeout:.0f}s:\n{server.log_tail()}"
                )
            time.sleep(0.2)
        server.startup_seconds = time.monotonic() - started
        return server
    except BaseException:
        _kill_steps(steps)
        if sock is not None:
            sock.close()
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
        raise


def start_keystone(
    venv: Path = KEYSTONE_VENV,
    *,
    admin_password: str = "admin-secret",
    timeout: float = 180.0,
) -> KeystoneServer:
    """Set up and start a fresh Keystone; returns once ``GET /v3`` answers."""
    if not keystone_installed(venv):
        raise KeystoneError(f"no Keystone in {venv}: run scripts/setup-keystone.sh")
    started = time.monotonic()

    def prepare(workdir: Path, conf: Path, log: Path, url: str) -> list[_Step]:
        user = pwd.getpwuid(os.getuid()).pw_name
        group = grp.getgrgid(os.getgid()).gr_name
        ids = ("--keystone-user", user, "--keystone-group", group)
        # Each step is mostly Keystone's import time (~3-4 s): run what is independent at once.
        # Keys and schema first; then bootstrap (needs the schema) alongside the server itself.
        steps = [
            _manage(venv, conf, log, "db_sync"),
            _manage(venv, conf, log, "fernet_setup", *ids),
            _manage(venv, conf, log, "credential_setup", *ids),
        ]
        try:
            _wait_manage(steps, log, started + timeout - time.monotonic())
        finally:
            _kill_steps(steps)
        return [_manage(
            venv, conf, log, "bootstrap",
            "--bootstrap-username", ADMIN_USER,
            "--bootstrap-password", admin_password,
            "--bootstrap-project-name", ADMIN_PROJECT,
            "--bootstrap-role-name", "admin",
            "--bootstrap-service-name", "keystone",
            "--bootstrap-region-id", REGION,
            "--bootstrap-public-url", url,
            "--bootstrap-internal-url", url,
            "--bootstrap-admin-url", url,
        )]  # fmt: skip

    return _launch(venv, admin_password, timeout, prepare)


if __name__ == "__main__":  # manual check: python tests/keystone_server.py
    srv = start_keystone()
    try:
        print(f"keystone {srv.url} (pid {srv.pid}) up in {srv.startup_seconds:.1f}s")
        pid = srv.create_project("demo")
        srv.create_user("alice", "alice-secret", pid, "member")
        token = srv.get_token("alice", "alice-secret", "demo")
        print("token:", token[:20], "...")
        twin = srv.clone()
        try:
            print(f"clone {twin.url} up in {twin.startup_seconds:.1f}s")
            print("clone token:", twin.get_token("alice", "alice-secret", "demo")[:20], "...")
        finally:
            twin.stop()
    finally:
        srv.stop()
