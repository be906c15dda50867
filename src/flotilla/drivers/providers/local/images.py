"""Node and workload images without a registry.

Two node image designs (see the feasibility note, section 2):

* **hostroot** (:func:`build_hostroot_image`): a ~1 MB tarball of ``/etc`` snapshots,
  the merged-usr symlinks and a few empty directories, imported with ``docker import``.
  Nodes run it with ``-v /usr:/usr:ro``, so they execute whatever is installed on the
  host (docker.io, haproxy, ...). ``/etc/alternatives`` and ``ld.so.cache`` are snapshots
  taken at build time: rebuild (``force=True``) after installing host packages.
  ``docker run --init`` does not work with it (``/sbin`` is a symlink into the read-only
  ``/usr``); run commands under ``/usr/bin/docker-init`` instead (the image's ENTRYPOINT).
* **rootfs** (:func:`build_debootstrap_image`): a self-contained Debian built with
  ``mmdebstrap`` (about 30 s and 390 MB once; the tarball is cached under
  ``DATA_DIR/images``).

Every node image carries the label ``flotilla.node-image.kind=hostroot|rootfs``; the
local provider reads it to decide on the ``/usr`` bind mount and the init process.

:func:`build_workload_image` makes a 2 MB ``busybox:local`` from Debian's busybox-static
for workloads inside clusters (import it into each node's daemon). Static-glibc busybox
``wget`` segfaults (NSS): use ``nc``, or ``nslookup`` for DNS.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from flotilla.errors import Unavailable

from .engine import Engine, EngineError
from .tarballs import busybox_tarball as busybox_tarball
from .tarballs import hostroot_tarball as hostroot_tarball

log = logging.getLogger(__name__)

KIND_LABEL = "flotilla.node-image.kind"
KIND_HOSTROOT = "hostroot"
KIND_ROOTFS = "rootfs"
DOCKER_INIT = "/usr/bin/docker-init"

DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SUITE = "bookworm"
DEBOOTSTRAP_PACKAGES = (
    "docker.io",
    "iproute2",
    "ca-certificates",
    "iptables",
    "procps",
    "iputils-ping",
    "kmod",
    "openssh-server",
    "haproxy",
)

# docker CLI runner: (argv, stdin) -> CompletedProcess; raises EngineError on failure.
_Runner = Callable[[Sequence[str], bytes | None], subprocess.CompletedProcess[str]]


def _engine_runner(engine: Engine) -> _Runner:
    def run(argv: Sequence[str], data: bytes | None) -> subprocess.CompletedProcess[str]:
        return engine.run(argv, input=data, timeout=600)

    return run


def _args_runner(docker_args: Sequence[str]) -> _Runner:
    """Runner for ``docker DOCKER_ARGS ...`` (e.g. ``["-H", "tcp://IP:2376", "--tlsverify", ...]``)."""

    def run(argv: Sequence[str], data: bytes | None) -> subprocess.CompletedProcess[str]:
        full = [*docker_args, *argv]
        proc = subprocess.run(
            ["docker", *full],
            input=data,
            stdin=None if data is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=600,
            check=False,
        )
        out = subprocess.CompletedProcess(
            proc.args,
            proc.returncode,
            proc.stdout.decode(errors="replace"),
            proc.stderr.decode(errors="replace"),
        )
        if proc.returncode != 0:
            raise EngineError(full, proc.returncode, out.stderr)
        return out

    return run


def _image_present(run: _Runner, tag: str) -> bool:
    try:
        run(["image", "inspect", "--format", "{{.Id}}", tag], None)
    except EngineError:
        return False
    return True


def image_kind(engine: Engine, image_ref: str) -> str | None:
    """The ``flotilla.node-image.kind`` label of a local image; None if the label is absent.

    Raises ``EngineError`` when the image does not exist.
    """
    res = engine.run(
        ["image", "inspect", "--format", f'{{{{index .Config.Labels "{KIND_LABEL}"}}}}', image_ref]
    )
    kind = res.stdout.strip()
    return kind if kind and kind != "<no value>" else None


# --------------------------------------------------------------------- builders


def _with_extras(base: bytes, extras: Mapping[str, Path], workdir: Path) -> Path:
    """Write ``base`` plus the host directories ``extras`` (image path -> host dir, symlinks
    kept as symlinks) as a tar file under ``workdir``; returns its path."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"hostroot-{os.getpid()}-{time.monotonic_ns()}.tar"
    path.write_bytes(base)
    with tarfile.open(path, mode="a", format=tarfile.PAX_FORMAT) as tar:
        for target, source in extras.items():
            tar.add(str(source.resolve()), arcname=target.strip("/"), recursive=True)
    return path


def build_hostroot_image(
    engine: Engine,
    tag: str = "flotilla-node:hostroot",
    *,
    force: bool = False,
    extras: Mapping[str, Path] | None = None,
    labels: Mapping[str, str] | None = None,
) -> str:
    """Import the hostroot node image as ``tag`` (idempotent: kept if present unless ``force``).

    The image's ENTRYPOINT is ``/usr/bin/docker-init --`` and its CMD ``dockerd``; nodes
    need ``-v /usr:/usr:ro`` (label ``flotilla.node-image.kind=hostroot``). ``extras``
    adds host directories at image paths (e.g. the Kubernetes binaries at
    ``/opt/flotilla/kube``), ``labels`` more image labels. Returns ``tag``.
    Raises ``Unavailable`` when the host lacks ``/usr/bin/docker-init`` (docker.io).
    """
    run = _engine_runner(engine)
    if not force and _image_present(run, tag):
        log.debug("node image %s already present", tag)
        return tag
    if not Path(DOCKER_INIT).exists():
        raise Unavailable(f"{DOCKER_INIT} is missing on this host: apt-get install docker.io")
    started = time.monotonic()
    data = hostroot_tarball()
    source, tarball = "-", None
    if extras:
        tarball = _with_extras(data, extras, engine.data_dir / "images")
        source, data = str(tarball), b""
    label_changes = [arg for k, v in (labels or {}).items() for arg in ("--change", f"LABEL {k}={v}")]
    try:
        _import_hostroot(run, tag, source, data if tarball is None else None, label_changes)
    finally:
        if tarball is not None:
            tarball.unlink(missing_ok=True)
    log.info(
        "built node image %s (hostroot, %d kB) in %.2f s", tag, len(data) // 1024, time.monotonic() - started
    )
    return tag


def _import_hostroot(run: _Runner, tag: str, source: str, data: bytes | None, extra: Sequence[str]) -> None:
    run(
        [
            "import",
            *extra,
            "--change",
            f"LABEL {KIND_LABEL}={KIND_HOSTROOT}",
            "--change",
            f'ENTRYPOINT ["{DOCKER_INIT}", "--"]',
            "--change",
            'CMD ["dockerd"]',
            "--change",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            source,
            tag,
        ],
        data,
    )


def build_debootstrap_image(
    engine: Engine,
    tag: str = "flotilla-node:debootstrap",
    mirror: str = DEFAULT_MIRROR,
    *,
    suite: str = DEFAULT_SUITE,
    packages: Sequence[str] = DEBOOTSTRAP_PACKAGES,
    cache_dir: Path | None = None,
    force: bool = False,
) -> str:
    """Build a self-contained Debian node image with mmdebstrap and import it as ``tag``.

    The tarball is cached as ``rootfs-<suite>-<hash>.tar`` in ``cache_dir`` (default
    ``DATA_DIR/images``; the hash covers suite, mirror and packages), so a rebuild after
    ``docker rmi`` only re-imports. The image has openssh-server and haproxy, but nothing
    starts sshd (a node command would need ``ssh-keygen -A; mkdir /run/sshd``).
    Idempotent: kept if ``tag`` exists unless ``force`` (which also rebuilds the tarball).
    Label ``flotilla.node-image.kind=rootfs``; CMD ``dockerd``. Returns ``tag``.
    Raises ``Unavailable`` when mmdebstrap is missing, ``EngineError``/``CalledProcessError``
    when the build or import fails.
    """
    run = _engine_runner(engine)
    if not force and _image_present(run, tag):
        log.debug("node image %s already present", tag)
        return tag
    key = hashlib.sha256("\0".join([suite, mirror, *sorted(packages)]).encode()).hexdigest()[:12]
    cache_dir = cache_dir or engine.data_dir / "images"
    cache_dir.mkdir(parents=True, exist_ok=True)
    tarball = cache_dir / f"rootfs-{suite}-{key}.tar"
    if force or not tarball.exists():
        mmdebstrap = shutil.which("mmdebstrap")
        if mmdebstrap is None:
            raise Unavailable("mmdebstrap is not installed: apt-get install mmdebstrap")
        partial = tarball.with_suffix(".partial.tar")
        log.info("building %s rootfs with mmdebstrap from %s (takes about 30 s)", suite, mirror)
        started = time.monotonic()
        subprocess.run(
            [
                mmdebstrap,
                "--variant=essential",
                "--include=" + ",".join(packages),
                "--dpkgopt=path-exclude=/usr/share/man/*",
                "--dpkgopt=path-exclude=/usr/share/doc/*",
                "--dpkgopt=path-exclude=/usr/share/locale/*",
                "--quiet",
                suite,
                str(partial),
                mirror,
            ],
            check=True,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=1800,
        )
        os.replace(partial, tarball)
        log.info("rootfs tarball %s built in %.1f s", tarball, time.monotonic() - started)
    started = time.monotonic()
    run(
        [
            "import",
            "--change",
            f"LABEL {KIND_LABEL}={KIND_ROOTFS}",
            "--change",
            'CMD ["dockerd"]',
            "--change",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            str(tarball),
            tag,
        ],
        None,
    )
    log.info("imported node image %s (rootfs) in %.1f s", tag, time.monotonic() - started)
    return tag


def build_workload_image(
    target: Engine | Sequence[str], tag: str = "busybox:local", *, force: bool = False
) -> str:
    """Import the busybox workload image as ``tag`` into ``target``; returns ``tag``.

    ``target`` is an :class:`Engine`, or docker CLI global arguments for another daemon
    (e.g. a node's: ``["-H", "tcp://172.29.1.10:2376", "--tlsverify", "--tlscacert", ...]``).
    Idempotent: kept if present unless ``force``. Raises ``Unavailable`` without
    busybox-static, ``EngineError`` when the import fails.
    """
    run = _engine_runner(target) if isinstance(target, Engine) else _args_runner(list(target))
    if not force and _image_present(run, tag):
        return tag
    started = time.monotonic()
    run(["import", "--change", 'CMD ["sh"]', "-", tag], busybox_tarball())
    log.info("imported workload image %s in %.2f s", tag, time.monotonic() - started)
    return tag
