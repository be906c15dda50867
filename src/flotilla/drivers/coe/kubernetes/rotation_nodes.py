"""What a CA rotation does on one node: read files, write files so that no process sees
half of one, run ``rotate.sh`` (restarts, API server handoffs), log how long parts took."""

from __future__ import annotations

import base64
import logging
import posixpath
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import resources

from flotilla.domain import NodeInfo
from flotilla.drivers.base import StepContext

SCRIPT = "/etc/flotilla/rotate.sh"
#: The most one ``rotate.sh`` call may take (it gives up on a service after 90 s itself).
RESTART_TIMEOUT = 150.0

Files = dict[str, bytes]

log = logging.getLogger(__name__)

_READ = 'for f; do [ -f "$f" ] && printf "%s %s\\n" "$f" "$(base64 -w0 < "$f")"; done; true'


def script() -> bytes:
    return resources.files(__package__).joinpath("rotate.sh").read_bytes()


def staged(path: str) -> str:
    """Where ``path``'s new content is written before ``rotate.sh install`` renames it into place
    (a dot file: the supervisor's service glob skips it)."""
    head, name = posixpath.split(path)
    return f"{head}/.{name}.rotating"


@contextmanager
def timed(ctx: StepContext, what: str) -> Iterator[None]:
    """Log how long ``what`` took (``bench/lifecycle.py`` prints these per rotation part)."""
    started = time.monotonic()
    yield
    log.info("cluster %s: rotation part %s took %.2fs", ctx.spec.uuid, what, time.monotonic() - started)


def run(ctx: StepContext, node: NodeInfo, *args: str) -> None:
    """``rotate.sh ARGS`` on ``node``; raises RuntimeError with its reason when it fails."""
    r = ctx.provider.exec(node, ["sh", SCRIPT, *args], timeout=RESTART_TIMEOUT)
    if not r.ok:
        raise RuntimeError(f"{node.name}: {(r.stderr or r.stdout).strip()[-600:]}")
    for line in r.stdout.splitlines():
        log.info("cluster %s: %s: rotate.sh %s: %s", ctx.spec.uuid, node.name, args[0], line)


def read(ctx: StepContext, node: NodeInfo, paths: Sequence[str]) -> Files:
    """The files among ``paths`` that exist on ``node`` (one exec)."""
    r = ctx.provider.exec(node, ["sh", "-c", _READ, "sh", *paths], timeout=20)
    if not r.ok:
        raise RuntimeError(
            f"{node.name}: reading {', '.join(paths)}: {(r.stderr or r.stdout).strip()[-300:]}"
        )
    out: Files = {}
    for line in r.stdout.splitlines():
        path, _, data = line.partition(" ")
        if path in paths:
            out[path] = base64.b64decode(data)
    return out


def put(ctx: StepContext, node: NodeInfo, files: Files) -> None:
    """Write ``files`` on ``node``: each next to its place first, then renamed into place
    (``rotate.sh install``), so a process reloading a changed file never reads half of it."""
    if not files:
        return
    ctx.provider.put_files(node, {SCRIPT: script(), **{staged(p): v for p, v in files.items()}})
    run(ctx, node, "install", *sorted(files))
