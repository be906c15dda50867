"""Kubernetes cluster templates: what the driver accepts and refuses, at template create.

The build cache is the stand-in of tests/api/conftest.py (``kube_cache.FAKE_VERSION``);
``test_not_built_*`` points it at an empty directory instead.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

import kube_cache
from flotilla.drivers.coe.kubernetes import labels

Auth = Callable[[str], dict[str, str]]


@pytest.fixture(autouse=True)
def image(register_image: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    return register_image("flotilla-node", "debian")


def create(
    api: TestClient, h: dict[str, str], path: str = "/v1/clustertemplates", **fields: Any
) -> httpx.Response:
    body: dict[str, Any] = {"coe": "kubernetes", "image_id": "flotilla-node", **fields}
    if path.endswith("baymodels"):
        body.setdefault("keypair_id", "testkey")
    return api.post(path, json=body, headers=h)


def refused(r: httpx.Response) -> str:
    assert r.status_code == 400, r.text
    err = r.json()["errors"][0]
    assert err["code"] == "client" and err["detail"].startswith(err["title"])
    return str(err["detail"])


def test_defaults_are_accepted(api: TestClient, auth: Auth) -> None:
    r = create(api, auth("p1_member"))
    assert r.status_code == 201, r.text
    t = r.json()
    assert t["coe"] == "kubernetes" and t["network_driver"] == "flannel" and t["volume_driver"] is None
    assert t["labels"] == {}


def test_guide_labels_and_built_version_are_accepted(api: TestClient, auth: Auth) -> None:
    wanted = {
        "flannel_backend": "host-gw", "flannel_network_cidr": "10.200.0.0/16", "flannel_network_subnetlen": "26",
        "kube_tag": kube_cache.FAKE_VERSION,
    }  # fmt: skip
    r = create(api, auth("p1_member"), network_driver="flannel", labels=wanted)
    assert r.status_code == 201, r.text
    assert r.json()["labels"] == wanted
    # the tag without its "v" names the same version; udp is the guide's default backend
    r = create(
        api, auth("p1_member"), labels={"kube_tag": kube_cache.FAKE_VERSION[1:], "flannel_backend": "udp"}
    )
    assert r.status_code == 201, r.text


def test_guide_storage_driver_default_is_accepted(api: TestClient, auth: Auth) -> None:
    """python-magnumclient 2.17 sends devicemapper unless told otherwise; containerd ignores it."""
    r = create(api, auth("p1_member"), docker_storage_driver="devicemapper", docker_volume_size=5)
    assert r.status_code == 201, r.text
    detail = refused(create(api, auth("p1_member"), docker_storage_driver="zfs"))
    assert "Supported drivers: devicemapper, overlay, overlay2" in detail


@pytest.mark.parametrize("driver", ["docker", "calico", "weave"])
def test_network_driver_other_than_flannel(api: TestClient, auth: Auth, driver: str) -> None:
    detail = refused(create(api, auth("p1_member"), network_driver=driver))
    assert detail == (
        f"Network driver type {driver} is not supported for COE kubernetes. Supported network drivers: flannel."
    )


def test_volume_drivers(api: TestClient, auth: Auth) -> None:
    detail = refused(create(api, auth("p1_member"), volume_driver="cinder"))
    assert detail.startswith(
        "Volume driver cinder needs OpenStack Cinder, which the local provider does not have"
    )
    assert "leave volume_driver unset" in detail
    detail = refused(create(api, auth("p1_member"), volume_driver="rexray"))
    assert (
        detail
        == "Volume driver type rexray is not supported for COE kubernetes. Supported volume drivers: cinder."
    )


@pytest.mark.parametrize(
    ("labels_", "words"),
    [
        ({"flannel_backend": "gre"}, ("flannel_backend=gre", "udp, vxlan, host-gw")),
        ({"flannel_network_cidr": "8.8.0.0/16"}, ("private network", "10.0.0.0/8")),
        ({"flannel_network_cidr": "10.254.0.0/16"}, ("overlaps the service network 10.254.0.0/16",)),
        ({"flannel_network_cidr": "10.0.0.0/8"}, ("overlaps the service network",)),
        ({"flannel_network_cidr": "10.100.0.1/16"}, ("host bits are set", "10.100.0.0/16")),
        ({"flannel_network_cidr": "10.100.0.0/25"}, ("too small for the default /24",)),
        ({"flannel_network_subnetlen": "16"}, ("flannel_network_subnetlen=16", "from 17 to 30")),
        ({"flannel_network_subnetlen": "31"}, ("from 17 to 30",)),
        ({"flannel_network_cidr": "192.168.0.0/24", "flannel_network_subnetlen": "24"}, ("from 25 to 30",)),
        ({"kube_tag": "v1.30.0"}, ("kube_tag=v1.30.0", f"Kubernetes {kube_cache.FAKE_VERSION} only")),
        ({"kube_tag": "latest"}, (f"kube_tag={kube_cache.FAKE_VERSION}",)),
    ],
    ids=[
        "backend", "public-cidr", "service-cidr", "covers-service-cidr", "host-bits", "small-cidr",
        "subnetlen-too-small", "subnetlen-31", "subnetlen-equal", "old-kube-tag", "kube-tag-word",
    ],
)  # fmt: skip
def test_bad_labels(api: TestClient, auth: Auth, labels_: dict[str, str], words: tuple[str, ...]) -> None:
    for path in ("/v1/clustertemplates", "/v1/baymodels"):
        detail = refused(create(api, auth("p1_member"), path=path, labels=labels_))
        for w in words:
            assert w in detail, detail
    assert api.get("/v1/clustertemplates", headers=auth("p1_member")).json()["clustertemplates"] == []


def test_patch_is_validated_by_the_driver(api: TestClient, auth: Auth) -> None:
    h = auth("p1_member")
    uuid = create(api, h).json()["uuid"]
    ops = [{"op": "replace", "path": "/labels", "value": {"kube_tag": "v1.36.0"}}]
    r = api.patch(f"/v1/clustertemplates/{uuid}", json=ops, headers=h)
    assert "this Flotilla runs Kubernetes v1.37.2 only" in refused(r)
    ops = [{"op": "replace", "path": "/volume_driver", "value": "cinder"}]
    assert "needs OpenStack Cinder" in refused(api.patch(f"/v1/clustertemplates/{uuid}", json=ops, headers=h))
    shown = api.get(f"/v1/clustertemplates/{uuid}", headers=h).json()
    assert shown["labels"] == {} and shown["volume_driver"] is None


def test_not_built(api: TestClient, auth: Auth, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(labels.CACHE_ENV, str(tmp_path / "empty"))
    detail = refused(create(api, auth("p1_member")))
    assert detail.startswith(
        "Kubernetes clusters are not available on this Flotilla: the Kubernetes binaries"
    )
    assert str(tmp_path / "empty" / "current" / "VERSIONS") in detail
    assert "scripts/build-kube.sh" in detail and "make setup" in detail
    # the other COEs work as before
    r = create(api, auth("p1_member"), coe="swarm")
    assert r.status_code == 201, r.text


def test_unfinished_build(
    api: TestClient, auth: Auth, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "current").mkdir()
    (tmp_path / "current" / "VERSIONS").write_text("etcd=v3.6.0\n")
    monkeypatch.setenv(labels.CACHE_ENV, str(tmp_path))
    assert "names no kubernetes= version" in refused(create(api, auth("p1_member")))


def test_cluster_create_checks_flannel_room(api: TestClient, auth: Auth) -> None:
    """A /28 flannel network in /30 subnets has room for 3 nodes (flannel skips the first subnet)."""
    h = auth("p1_member")
    small = {"flannel_network_cidr": "192.168.7.0/28", "flannel_network_subnetlen": "30"}
    tpl = create(api, h, labels=small).json()["uuid"]
    api.post("/local/v1/keypairs", json={"name": "kk", "public_key": _public_key()}, headers=h)
    r = api.post(
        "/v1/clusters",
        json={"name": "big", "cluster_template_id": tpl, "node_count": 3, "keypair": "kk"},
        headers=h,
    )
    detail = refused(r)
    assert "room for 3 nodes, but the cluster would have 4" in detail


def _public_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
