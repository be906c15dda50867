"""The local provider against a real (dedicated) Docker Engine.

Run: ``sudo .venv/bin/python -m pytest -m e2e tests/e2e/test_local_provider.py`` (root,
docker.io installed). Every test checks that nothing labelled with its cluster is left.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from flotilla.domain import NetworkSpec, NodeSpec
from flotilla.drivers.base import CAP_EXEC, CAP_HOST_REACHABLE, CAP_SIZED_VOLUMES, Provider
from flotilla.drivers.providers.local import Engine, LocalProvider, leaks
from flotilla.drivers.providers.local.images import (
    KIND_HOSTROOT,
    KIND_ROOTFS,
    build_debootstrap_image,
    build_hostroot_image,
    build_workload_image,
    image_kind,
)
from flotilla.errors import FlotillaError, NotFound

pytestmark = pytest.mark.e2e
log = logging.getLogger(__name__)

TLS_DIR = "/etc/docker/tls"


# --------------------------------------------------------------------------- helpers


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    server_ips: Sequence[str] = (),
    usage: x509.ObjectIdentifier | None = None,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = issuer if issuer else (name, key)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server_ips:
        sans: list[x509.GeneralName] = [x509.DNSName(subject), x509.DNSName("localhost")]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in [*server_ips, "127.0.0.1"]]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _tls_material(node: str, ip: str, client_dir: Path) -> dict[str, bytes]:
    """Throwaway CA, server cert for ``node``/``ip`` and a client cert in ``client_dir``."""
    ca_key = _key()
    ca = _cert("flotilla-e2e-ca", ca_key, None, ca=True)
    srv_key = _key()
    srv = _cert(node, srv_key, (ca.subject, ca_key), server_ips=[ip], usage=ExtendedKeyUsageOID.SERVER_AUTH)
    cli_key = _key()
    cli = _cert("client", cli_key, (ca.subject, ca_key), usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    client_dir.mkdir(parents=True, exist_ok=True)
    (client_dir / "ca.pem").write_bytes(_pem(ca))
    (client_dir / "cert.pem").write_bytes(_pem(cli))
    (client_dir / "key.pem").write_bytes(_pem_key(cli_key))
    return {
        f"{TLS_DIR}/ca.pem": _pem(ca),
        f"{TLS_DIR}/server-cert.pem": _pem(srv),
        f"{TLS_DIR}/server-key.pem": _pem_key(srv_key),
    }


def _docker(args: Sequence[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)


def _wait_daemon(args: Sequence[str], timeout: float = 30.0) -> float:
    """Poll ``docker ARGS version`` until the node's daemon answers; return the seconds waited."""
    started = time.monotonic()
    while True:
        res = _docker([*args, "version", "--format", "{{.Server.Version}}"], timeout=10)
        if res.returncode == 0:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            pytest.fail(f"daemon {args} did not answer within {timeout} s: {res.stderr.strip()}")
        time.sleep(0.05)


def _node_spec(
    cluster: str, name: str, image: str, network: str, command: Sequence[str], **kw: Any
) -> NodeSpec:
    return NodeSpec(
        cluster_uuid=cluster,
        name=name,
        role=kw.pop("role", "master"),
        image_ref=image,
        network=network,
        cpus=kw.pop("cpus", 1.0),
        memory_mb=kw.pop("memory_mb", 768),
        command=list(command),
        **kw,
    )


PLAIN_DOCKERD = [
    "dockerd",
    "--host",
    "unix:///var/run/docker.sock",
    "--host",
    "tcp://0.0.0.0:2375",
    "--tls=false",
]


# --------------------------------------------------------------------------- tests


def test_engine_is_reused_and_image_is_labelled(engine: Engine, hostroot_image: str) -> None:
    again = Engine.connect(None if engine.owned else engine.host, engine.data_dir)
    assert again.host == engine.host
    if engine.owned:
        assert again.pid == engine.pid
    assert image_kind(engine, hostroot_image) == KIND_HOSTROOT
    started = time.monotonic()
    assert build_hostroot_image(engine, hostroot_image) == hostroot_image  # idempotent, no rebuild
    assert time.monotonic() - started < 1.0


def test_two_nodes_tls_sized_volume_exec_and_cleanup(
    provider: LocalProvider,
    engine: Engine,
    hostroot_image: str,
    cluster_uuid: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert isinstance(provider, Provider)
    assert {CAP_SIZED_VOLUMES, CAP_HOST_REACHABLE, CAP_EXEC} <= provider.capabilities()
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    net = provider.ensure_network(NetworkSpec(cluster_uuid=cluster_uuid, name=f"{cluster_uuid}-net"))
    timings["network"] = time.monotonic() - t0
    assert net.owned
    subnet = ipaddress.IPv4Network(net.subnet)
    assert subnet.prefixlen == 24 and subnet.subnet_of(ipaddress.IPv4Network("172.29.0.0/16"))
    assert provider.ensure_network(NetworkSpec(cluster_uuid=cluster_uuid, name=net.name)) == net

    tls_ip = str(subnet.network_address + 10)
    m0, w0 = f"{cluster_uuid}-m0", f"{cluster_uuid}-w0"
    tls_files = _tls_material(m0, tls_ip, tmp_path / "client")
    tls_cmd = [
        "dockerd",
        "--host",
        "unix:///var/run/docker.sock",
        "--host",
        "tcp://0.0.0.0:2376",
        "--tlsverify",
        "--tlscacert",
        f"{TLS_DIR}/ca.pem",
        "--tlscert",
        f"{TLS_DIR}/server-cert.pem",
        "--tlskey",
        f"{TLS_DIR}/server-key.pem",
    ]
    specs = [
        _node_spec(
            cluster_uuid,
            m0,
            hostroot_image,
            net.name,
            tls_cmd,
            ip=tls_ip,
            files=tls_files,
            ssh_public_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE2e e2e@flotilla",
            env={"NO_PROXY": "localhost"},
            labels={"purpose": "e2e"},
        ),
        _node_spec(
            cluster_uuid,
            w0,
            hostroot_image,
            net.name,
            PLAIN_DOCKERD,
            role="worker",
            volume_gb=2,
            files={"/etc/flotilla/hello": b"hello\n"},
        ),
    ]
    t0 = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        master, worker = pool.map(provider.ensure_node, specs)
    timings["nodes up (2 in parallel)"] = time.monotonic() - t0
    assert master.state == worker.state == "running"
    assert master.address == tls_ip
    assert worker.address is not None and ipaddress.ip_address(worker.address) in subnet

    tls_args = ["-H", f"tcp://{tls_ip}:2376", "--tlsverify"]
    tls_args += ["--tlscacert", str(tmp_path / "client/ca.pem")]
    tls_args += ["--tlscert", str(tmp_path / "client/cert.pem"), "--tlskey", str(tmp_path / "client/key.pem")]
    plain_args = ["-H", f"tcp://{worker.address}:2375"]
    t0 = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(_wait_daemon, [tls_args, plain_args]))
    timings["daemons answer"] = time.monotonic() - t0
    info = _docker([*tls_args, "info", "--format", "{{.Driver}}"])
    assert info.returncode == 0 and info.stdout.strip() == "overlay2", info.stderr
    no_cert = _docker(["-H", f"tcp://{tls_ip}:2376", "version"])
    assert no_cert.returncode != 0
    # Node to node over the cluster network (bash's /dev/tcp from the host's /usr).
    reach = provider.exec(worker, ["timeout", "3", "bash", "-c", f"exec 3<>/dev/tcp/{tls_ip}/2376"])
    assert reach.ok, reach

    # Sized /var/lib/docker: ~2 GiB ext4 on a loop device.
    df = provider.exec(worker, ["df", "-k", "/var/lib/docker"])
    assert df.ok, df.stderr
    fs, size_kb = df.stdout.splitlines()[1].split()[:2]
    assert fs.startswith("/dev/loop")
    assert 1_800_000 < int(size_kb) <= 2_100_000, df.stdout
    assert any(entry.startswith("loop:") for entry in leaks(engine, cluster_uuid))
    # The image holds the node's /var/lib/docker (keys included): private to root.
    image = engine.data_dir / "volumes" / cluster_uuid / f"{w0}.img"
    assert image.stat().st_mode & 0o777 == 0o600
    assert image.parent.stat().st_mode & 0o777 == 0o700
    assert (engine.data_dir / "volumes").stat().st_mode & 0o777 == 0o700
    node_files = engine.data_dir / "nodes" / cluster_uuid
    assert node_files.stat().st_mode & 0o777 == 0o700

    # Files, ssh key and resolv.conf are in place; env and limits applied.
    cat = provider.exec(worker, ["cat", "/etc/flotilla/hello", "/etc/resolv.conf"])
    assert cat.ok and cat.stdout == "hello\nnameserver 127.0.0.1\n", cat
    key = provider.exec(master, ["stat", "-c", "%a %s", "/root/.ssh/authorized_keys"])
    # Public keys: 0644 so the login user's sshd can read them (StrictModes accepts root 0644).
    assert key.ok and key.stdout.split()[0] == "644", key
    env = provider.exec(master, ["sh", "-c", "echo $NO_PROXY"])
    assert env.stdout.strip() == "localhost"
    limits = engine.run(["inspect", "--format", "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}}", m0]).stdout
    assert limits.split() == [str(10**9), str(768 * 1024 * 1024)]
    stdin = provider.exec(worker, ["cat"], stdin=b"via stdin")
    assert stdin.stdout == "via stdin"
    slow = provider.exec(worker, ["sleep", "5"], timeout=0.5)
    assert slow.returncode == 124 and "timed out" in slow.stderr

    # put_files: a bind-mounted path is rewritten in place, a new path is unpacked inside.
    provider.put_files(worker, {"/etc/flotilla/hello": b"again\n", "/etc/flotilla/new/file.txt": b"new\n"})
    cat = provider.exec(worker, ["cat", "/etc/flotilla/hello", "/etc/flotilla/new/file.txt"])
    assert cat.stdout == "again\nnew\n", cat

    # A workload image imported into a node's daemon runs there.
    t0 = time.monotonic()
    assert build_workload_image(plain_args) == "busybox:local"
    run = _docker([*plain_args, "run", "--rm", "busybox:local", "echo", "inner ok"])
    timings["workload image + inner run"] = time.monotonic() - t0
    assert run.stdout.strip() == "inner ok", run.stderr

    # list_nodes: both nodes, from one API request and no CLI process.
    calls: list[str] = []
    real_request = engine.api.request
    real_run = engine.run

    def counting_request(method: str, path: str, **kw: Any) -> Any:
        calls.append(f"{method} {path}")
        return real_request(method, path, **kw)

    def no_cli(argv: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        calls.append(f"docker {' '.join(argv)}")
        return real_run(argv, **kw)

    monkeypatch.setattr(engine.api, "request", counting_request)
    monkeypatch.setattr(engine, "run", no_cli)
    nodes = provider.list_nodes(cluster_uuid)
    monkeypatch.undo()
    assert calls == ["GET /containers/json"], calls
    assert {(n.name, n.role, n.state, n.address) for n in nodes} == {
        (m0, "master", "running", tls_ip),
        (w0, "worker", "running", worker.address),
    }
    assert {n.name for n in provider.list_nodes()} >= {m0, w0}

    # Idempotency: a running node is returned as is; a stopped one is started again.
    assert provider.ensure_node(specs[0]).provider_id == master.provider_id
    engine.run(["stop", "--time", "1", w0])
    assert {n.name: n.state for n in provider.list_nodes(cluster_uuid)}[w0] == "stopped"
    t0 = time.monotonic()
    again = provider.ensure_node(specs[1])
    assert again.state == "running" and again.provider_id == worker.provider_id
    _wait_daemon(plain_args)
    timings["restart stopped node + daemon"] = time.monotonic() - t0
    assert provider.exec(worker, ["cat", "/etc/flotilla/hello"]).stdout == "again\n"

    t0 = time.monotonic()
    provider.restart_node(master)
    _wait_daemon(tls_args)
    timings["restart_node + daemon"] = time.monotonic() - t0

    t0 = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda n: provider.delete_node(cluster_uuid, n), [m0, w0]))
    provider.delete_node(cluster_uuid, w0)  # already gone: success
    provider.delete_network(cluster_uuid, net.name)
    provider.delete_network(cluster_uuid, net.name)
    timings["delete"] = time.monotonic() - t0
    log.info("timings: %s", ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()))
    assert leaks(engine, cluster_uuid) == []
    assert provider.list_nodes(cluster_uuid) == []


def test_missing_image_gives_clear_error(provider: LocalProvider, engine: Engine, cluster_uuid: str) -> None:
    net = provider.ensure_network(NetworkSpec(cluster_uuid=cluster_uuid, name=f"{cluster_uuid}-net"))
    spec = _node_spec(cluster_uuid, f"{cluster_uuid}-x", "flotilla-node:does-not-exist", net.name, ["true"])
    assert not provider.image_exists(spec.image_ref)
    with pytest.raises(NotFound, match=r"image 'flotilla-node:does-not-exist' does not exist"):
        provider.ensure_node(spec)
    provider.delete_network(cluster_uuid, net.name)
    assert leaks(engine, cluster_uuid) == []


def test_failing_node_start_is_reported(
    provider: LocalProvider, engine: Engine, hostroot_image: str, cluster_uuid: str
) -> None:
    net = provider.ensure_network(NetworkSpec(cluster_uuid=cluster_uuid, name=f"{cluster_uuid}-net"))
    # docker run itself fails: the error names the node and Docker's reason.
    spec = _node_spec(cluster_uuid, f"{cluster_uuid}-nonet", hostroot_image, "no-such-network", ["true"])
    with pytest.raises(FlotillaError, match=rf"(?s){cluster_uuid}-nonet.*no-such-network"):
        provider.ensure_node(spec)
    # The command dies right away: reported when the exit beats our inspect (racy under load).
    bad = _node_spec(cluster_uuid, f"{cluster_uuid}-bad", hostroot_image, net.name, ["/no/such/binary"])
    try:
        provider.ensure_node(bad)
    except FlotillaError as exc:
        assert "exited at once" in str(exc) and "/no/such/binary" in str(exc)
    for name in (spec.name, bad.name):
        provider.delete_node(cluster_uuid, name)
    provider.delete_network(cluster_uuid, net.name)
    assert leaks(engine, cluster_uuid) == []


def test_sweep_removes_everything(
    provider: LocalProvider, engine: Engine, hostroot_image: str, cluster_uuid: str
) -> None:
    net = provider.ensure_network(NetworkSpec(cluster_uuid=cluster_uuid, name=f"{cluster_uuid}-net"))
    other = provider.ensure_network(NetworkSpec(cluster_uuid=cluster_uuid, name=f"{cluster_uuid}-net2"))
    assert not ipaddress.IPv4Network(net.subnet).overlaps(ipaddress.IPv4Network(other.subnet))
    spec = _node_spec(
        cluster_uuid, f"{cluster_uuid}-s0", hostroot_image, net.name, ["sleep", "600"], volume_gb=1
    )
    provider.ensure_node(spec)
    assert len(leaks(engine, cluster_uuid)) >= 5  # container, 2 networks, volume, loop, dirs
    removed = provider.sweep(cluster_uuid)
    kinds = {entry.split(":", 1)[0] for entry in removed}
    assert {"container", "volume", "network", "loop", "dir"} <= kinds, removed
    assert leaks(engine, cluster_uuid) == []
    assert provider.sweep(cluster_uuid) == []


def test_fixed_network_is_used_not_owned(provider: LocalProvider, engine: Engine, cluster_uuid: str) -> None:
    shared = provider.ensure_network(NetworkSpec(cluster_uuid=cluster_uuid, name=f"{cluster_uuid}-shared"))
    fixed = provider.ensure_network(
        NetworkSpec(cluster_uuid="someone-else", name="ignored", fixed_network=shared.name)
    )
    assert not fixed.owned and fixed.subnet == shared.subnet
    provider.delete_network("someone-else", shared.name)  # not theirs: kept
    assert any(e == f"network:{shared.name}" for e in leaks(engine, cluster_uuid))
    with pytest.raises(NotFound):
        provider.ensure_network(NetworkSpec(cluster_uuid=cluster_uuid, name="x", fixed_network="no-such-net"))
    provider.delete_network(cluster_uuid, shared.name)
    assert leaks(engine, cluster_uuid) == []


def test_stopped_node_with_vanished_loop_device_is_recreated_on_its_data(
    provider: LocalProvider, engine: Engine, hostroot_image: str, cluster_uuid: str
) -> None:
    """After a host reboot loop devices are gone; ensure_node re-attaches the backing file."""
    net = provider.ensure_network(NetworkSpec(cluster_uuid=cluster_uuid, name=f"{cluster_uuid}-net"))
    spec = _node_spec(
        cluster_uuid, f"{cluster_uuid}-l0", hostroot_image, net.name, ["sleep", "600"], volume_gb=1
    )
    first = provider.ensure_node(spec)
    assert provider.exec(first, ["sh", "-c", "echo kept > /var/lib/docker/marker"]).ok
    engine.run(["stop", "--time", "0", spec.name])
    for entry in leaks(engine, cluster_uuid):
        if entry.startswith("loop:"):
            subprocess.run(["losetup", "-d", entry.split()[0].removeprefix("loop:")], check=True)
    again = provider.ensure_node(spec)
    assert again.state == "running" and again.provider_id != first.provider_id
    assert provider.exec(again, ["cat", "/var/lib/docker/marker"]).stdout == "kept\n"
    provider.delete_node(cluster_uuid, spec.name)
    provider.delete_network(cluster_uuid, net.name)
    assert leaks(engine, cluster_uuid) == []


@pytest.mark.skipif(
    not os.environ.get("FLOTILLA_E2E_DEBOOTSTRAP"),
    reason="set FLOTILLA_E2E_DEBOOTSTRAP=1 (needs mmdebstrap and the Debian mirror; ~30-120 s the first time)",
)
def test_debootstrap_node_image(provider: LocalProvider, engine: Engine, cluster_uuid: str) -> None:
    cache = os.environ.get("FLOTILLA_E2E_IMAGE_CACHE")
    image = build_debootstrap_image(engine, cache_dir=Path(cache) if cache else None)
    assert image_kind(engine, image) == KIND_ROOTFS
    net = provider.ensure_network(NetworkSpec(cluster_uuid=cluster_uuid, name=f"{cluster_uuid}-net"))
    node = provider.ensure_node(
        _node_spec(cluster_uuid, f"{cluster_uuid}-d0", image, net.name, PLAIN_DOCKERD)
    )
    _wait_daemon(["-H", f"tcp://{node.address}:2375"])
    assert provider.exec(node, ["test", "-x", "/usr/sbin/haproxy"]).ok
    provider.delete_node(cluster_uuid, node.name)
    provider.delete_network(cluster_uuid, net.name)
    assert leaks(engine, cluster_uuid) == []
