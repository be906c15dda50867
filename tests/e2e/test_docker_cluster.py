"""The `docker` COE end to end on the real Docker Engine: TLS, CSR signing, CA rotation,
crash recovery, failure with a reason, and deletes that leave nothing behind."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flotilla_server import Server, docker
from host_devices import host_disk

from flotilla.certs.authority import generate_csr
from flotilla.drivers.providers.local import Engine, leaks

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(data_dir=tmp_path_factory.mktemp("srv-docker"), docker_host=engine.host).start()
    try:
        srv.fl("image-build", "flotilla-node", "--os-distro", "debian")
        srv.fl("keypair-create", "testkey")
        srv.fl(
            "cluster-template-create", "dtpl", "--coe", "docker", "--image", "flotilla-node", "--keypair", "testkey",
            "--external-network", "public", "--flavor", "m1.small", "--docker-storage-driver", "overlay2",
            "--docker-volume-size", "2",
        )  # fmt: skip
        yield srv
    finally:
        srv.stop()


def test_docker_cluster_tls_csr_rotation_and_clean_delete(
    server: Server, engine: Engine, tmp_path: Path
) -> None:
    server.fl("cluster-create", "d1", "--cluster-template", "dtpl", "--node-count", "1")
    c = server.wait("d1")
    assert c["status"] == "CREATE_COMPLETE", c["status_reason"]
    assert c["api_address"].startswith("tcp://") and c["api_address"].endswith(":2376")
    uuid = c["uuid"]

    # The native client over TLS, with the bay-config environment.
    env = server.docker_env("d1", tmp_path / "certs")
    assert env["DOCKER_TLS_VERIFY"] == "1" and env["DOCKER_HOST"] == c["api_address"]
    server.fl("cluster-image-load", "d1", "busybox")
    out = docker(env, "run", "--rm", "busybox:local", "echo", "hello-from-flotilla").stdout
    assert "hello-from-flotilla" in out
    # The escape, verbatim, with nothing but the cluster's TLS endpoint: refused.
    disk = host_disk()[0]
    escape = docker(
        env, "run", "--rm", "--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined", "--device", disk,
        "busybox:local", "mount", disk, "/mnt", check=False,
    )  # fmt: skip
    assert escape.returncode != 0, escape.stdout
    # /var/lib/docker is really limited to docker_volume_size (2 GB).
    df = docker(env, "run", "--rm", "-v", "/var/lib/docker:/d:ro", "busybox:local", "df", "-m", "/d").stdout
    size_mb = int(df.splitlines()[-1].split()[1])
    assert 1500 < size_mb < 2100, df

    # The keypair's key logs in as the guide's login name.
    key = server.data_dir / "keys" / "testkey"
    ip = c["api_address"].removeprefix("tcp://").split(":")[0]
    ssh = subprocess.run(
        ["ssh", "-i", str(key), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", f"fedora@{ip}", "id -un; hostname"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert ssh.returncode == 0, ssh.stderr
    assert ssh.stdout.split()[0] == "fedora" and "master-0" in ssh.stdout, ssh.stdout

    # A client without a certificate is refused.
    ca_only = tmp_path / "ca-only"
    ca_only.mkdir()
    (ca_only / "ca.pem").write_text((tmp_path / "certs" / "ca.pem").read_text())
    no_cert = {**env, "DOCKER_CERT_PATH": str(ca_only)}
    r = docker(no_cert, "version", check=False)
    assert r.returncode != 0

    # A CSR signed through the API (ca-sign) works with docker.
    csr, key = generate_csr(common_name="alice")
    (tmp_path / "alice.csr").write_text(csr)
    signed = server.fl("ca-sign", "--cluster", "d1", "--csr", str(tmp_path / "alice.csr")).stdout
    alice = tmp_path / "alice"
    alice.mkdir()
    (alice / "ca.pem").write_text((tmp_path / "certs" / "ca.pem").read_text())
    (alice / "cert.pem").write_text(signed.strip() + "\n")
    (alice / "key.pem").write_text(key)
    alice_env = {**env, "DOCKER_CERT_PATH": str(alice)}
    assert docker(alice_env, "version", "--format", "{{.Server.Version}}").stdout.strip()

    # Rotate the CA: the old client certificate is refused, a new config works.
    server.fl("ca-rotate", "--cluster", "d1")
    c = server.wait("d1")
    assert c["status"] == "UPDATE_COMPLETE", c["status_reason"]
    r = docker(alice_env, "version", check=False)
    assert r.returncode != 0 and ("certificate" in r.stderr or "tls" in r.stderr.lower()), r.stderr
    env2 = server.docker_env("d1", tmp_path / "certs2")
    assert docker(env2, "version", "--format", "{{.Server.Version}}").stdout.strip()

    # Delete: nothing carrying the cluster's label remains.
    server.fl("cluster-delete", "d1")
    assert server.wait("d1") == {}
    assert leaks(engine, uuid) == []


def test_sigkill_during_create_resumes_without_duplicates(
    engine: Engine, hostroot_image: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Its own server: the shared one must not be killed.
    srv = Server(data_dir=tmp_path_factory.mktemp("srv-kill"), docker_host=engine.host).start()
    try:
        srv.fl("image-create", "node", "--os-distro", "debian", "--source", hostroot_image)
        srv.fl(
            "cluster-template-create", "st", "--coe", "swarm", "--image", "node", "--external-network", "public",
            "--flavor", "m1.small", "--docker-storage-driver", "overlay2",
        )  # fmt: skip
        uuid = srv.api(
            "POST", "/v1/clusters", json={"name": "k1", "cluster_template_id": "st", "node_count": 2}
        ).json()["uuid"]
        deadline = time.monotonic() + 60
        while True:  # kill once nodes are being started
            reason = srv.cluster(uuid)["status_reason"] or ""
            if reason[:1].isdigit() and int(reason.split("/")[0]) >= 3:
                break
            assert time.monotonic() < deadline, reason
            time.sleep(0.05)
        srv.kill()
        srv.start()
        c = srv.wait(uuid)
        assert c["status"] == "CREATE_COMPLETE", c["status_reason"]
        names = engine.run(
            ["ps", "-a", "--filter", f"label=flotilla.cluster={uuid}", "--format", "{{.Names}}"]
        ).stdout.split()
        assert sorted(names) == sorted(set(names)) and len(names) == 3, names
        srv.fl("cluster-delete", uuid)
        assert srv.wait(uuid) == {}
        assert leaks(engine, uuid) == []
    finally:
        srv.stop()


def test_create_that_cannot_succeed_fails_with_a_reason(
    server: Server, engine: Engine, hostroot_image: str
) -> None:
    # A node image removed behind our back.
    engine.run(["tag", hostroot_image, "flotilla-node:doomed"])
    server.fl("image-create", "doomed", "--os-distro", "debian", "--source", "flotilla-node:doomed")
    server.fl(
        "cluster-template-create", "doomed-t", "--coe", "docker", "--image", "doomed", "--external-network", "public",
        "--docker-storage-driver", "overlay2",
    )  # fmt: skip
    engine.run(["rmi", "flotilla-node:doomed"])
    uuid = server.api("POST", "/v1/clusters", json={"name": "f1", "cluster_template_id": "doomed-t"}).json()[
        "uuid"
    ]
    c = server.wait(uuid, timeout=120)
    assert c["status"] == "CREATE_FAILED"
    assert "doomed" in c["status_reason"] and "starting node" in c["status_reason"], c["status_reason"]
    assert c["faults"]
    server.fl("cluster-delete", uuid)
    assert server.wait(uuid) == {}
    assert leaks(engine, uuid) == []
