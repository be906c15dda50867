"""The local provider renders the provider-neutral bootstrap spec (``NodeSpec``: files,
service, mounts, resources, flavor) as a container-create request."""

from __future__ import annotations

from pathlib import Path

from flotilla.domain import NodeSpec
from flotilla.drivers.providers.local.containers import LABEL_FLAVOR, create_body


def _spec(**kw: object) -> NodeSpec:
    base: dict[str, object] = {
        "cluster_uuid": "c1", "name": "c1-master-0", "role": "master", "image_ref": "img", "network": "c1-net",
        "cpus": 1.5, "memory_mb": 1024, "command": ["dockerd", "-H", "tcp://0.0.0.0:2376"],
        "volume_gb": 5, "env": {"HTTP_PROXY": "http://p:3128"}, "volume_path": "/var", "flavor": "m1.small",
    }  # fmt: skip
    base.update(kw)
    return NodeSpec(**base)  # type: ignore[arg-type]


def test_every_part_of_the_spec_reaches_the_container() -> None:
    mounts = [(Path("/data/nodes/c1/c1-master-0/files/etc/a.pem"), "/etc/a.pem")]
    body = create_body(_spec(), False, "c1-master-0-docker", mounts, Path("/data/nodes/resolv.conf"))
    host = body["HostConfig"]
    # service: the command (under --init for non-hostroot images) and its environment
    assert body["Cmd"] == ["dockerd", "-H", "tcp://0.0.0.0:2376"] and host["Init"] is True
    assert body["Env"] == ["HTTP_PROXY=http://p:3128"]
    # mounts: the data volume at volume_path; files read-only at their paths
    assert "c1-master-0-docker:/var" in host["Binds"]
    assert host["Mounts"] == [
        {"Type": "bind", "Source": "/data/nodes/c1/c1-master-0/files/etc/a.pem", "Target": "/etc/a.pem",
         "ReadOnly": True}
    ]  # fmt: skip
    # resources and flavor
    assert host["NanoCpus"] == 1_500_000_000 and host["Memory"] == host["MemorySwap"] == 1024 * 1024 * 1024
    assert body["Labels"][LABEL_FLAVOR] == "m1.small"


def test_a_node_without_a_catalog_flavor_has_no_flavor_label() -> None:
    body = create_body(_spec(flavor=None, role="lb"), True, "v", [], Path("/r"))
    assert LABEL_FLAVOR not in body["Labels"]
    assert body["Cmd"][0] == "--"  # hostroot: the command runs under the image's docker-init
