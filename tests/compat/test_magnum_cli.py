"""The legacy ``magnum`` shell (python-magnumclient 2.17.0, unchanged) against Flotilla.

Token mode (``--os-token T --os-endpoint-override URL``), as the module docstring of
conftest.py explains. Starts from the user guide's baymodel examples, then the
cluster-template commands, paging, and the errors a user sees on bad input.
"""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # conftest.py is pytest's, not a package module: types only
    from conftest import Magnum, Server

pytestmark = pytest.mark.compat

TRACEBACK = "Traceback (most recent call last)"
# What 2.17 prints in token mode for an error: its exception for the status, never the
# server's text (it reads that only from an application/json body, and then crashes on
# http.client's response: "'HTTPResponse' object has no attribute 'json'", which is what
# it printed before Flotilla sent it errors as text/plain; the text is in the --debug log).
TOKEN_MODE_REASONS = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 409: "Conflict"}


def token_mode_error(status: int) -> str:
    return f"{TOKEN_MODE_REASONS[status]} (HTTP {status})"


def unique(prefix: str) -> str:
    """A name no other test uses (names are not unique on the server; lookups would 409)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# The common flags of the guide's examples (magnum-user-guide.rst, Kubernetes and Swarm).
GUIDE_FLAGS = [
    "--image-id",
    "fedora-atomic-latest",
    "--keypair-id",
    "testkey",
    "--external-network-id",
    "public",
    "--dns-nameserver",
    "8.8.8.8",
    "--flavor-id",
    "m1.small",
    "--docker-volume-size",
    "5",
]

BAYMODEL_DEPRECATION = "Baymodel commands are deprecated"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def is_uuid(value: str) -> bool:
    return bool(UUID_RE.match(value))


def labels_of(props: dict[str, str]) -> str:
    """The printed labels cell; 2.17 prints the Python repr of the dict."""
    return props["labels"]


@pytest.fixture
def swarm_template(magnum: Magnum) -> Iterator[str]:
    """A swarm cluster template made with the CLI; deleted afterwards (if still there)."""
    name = unique("ct-swarm")
    magnum("cluster-template-create", name, "--coe", "swarm", *GUIDE_FLAGS).ok()
    yield name
    magnum("cluster-template-delete", name)


# --------------------------------------------------------------------------- basics


def test_version(magnum_bin: object) -> None:
    out = subprocess.run(
        [str(magnum_bin), "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out
    assert (out.stdout + out.stderr).strip() == "2.17.0"


def test_os_cloud_needs_keystone(magnum_bin: object, server: Server) -> None:
    """``magnum --os-cloud flotilla`` cannot use the server's admin_token clouds.yaml.

    Client 2.17 always passes ``auth_type='password'`` to os-client-config, which wins over
    the cloud's ``auth_type``; the password plugin then asks for a Keystone ``auth_url``.
    This pins down that limitation (documented in conftest.py): if a client change makes
    session mode work, this fails and the session mode should get its own tests.
    """
    env = {
        "OS_CLIENT_CONFIG_FILE": str(server.clouds_yaml),
        "PATH": "/usr/bin:/bin",
        "PYTHONWARNINGS": "ignore",
    }
    out = subprocess.run(
        [str(magnum_bin), "--os-cloud", "flotilla", "cluster-template-list"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert out.returncode != 0
    assert TRACEBACK not in out.stdout + out.stderr
    assert "auth_url" in out.stderr


# --------------------------------------------------------------------------- the user guide's baymodels


@pytest.mark.parametrize(
    ("name", "coe", "extra", "network_driver"),
    [
        ("swarmbaymodel", "swarm", [], "docker"),
        ("k8sbaymodel", "kubernetes", ["--network-driver", "flannel"], "flannel"),
    ],
    ids=["swarm", "kubernetes"],
)
def test_guide_baymodel_lifecycle(
    magnum: Magnum, magnum_env: dict[str, str], name: str, coe: str, extra: list[str], network_driver: str
) -> None:
    # magnum baymodel-create --name NAME --image-id ... --coe COE  (as in the guide)
    created = magnum("baymodel-create", "--name", name, *GUIDE_FLAGS, *extra, "--coe", coe).ok()
    assert BAYMODEL_DEPRECATION in created.stdout  # 2.17 prints its warnings on stdout
    props = created.props()
    try:
        assert props["name"] == name
        assert props["coe"] == coe
        assert props["image_id"] == "fedora-atomic-latest"
        assert props["keypair_id"] == "testkey"
        assert props["external_network_id"] == "public"
        assert props["dns_nameserver"] == "8.8.8.8"
        assert props["flavor_id"] == "m1.small"
        assert props["docker_volume_size"] == "5"
        assert props["docker_storage_driver"] == "devicemapper"  # the 2.17 CLI default
        assert props["network_driver"] == network_driver  # swarm: the server's default
        assert props["cluster_distro"] == "fedora-atomic"  # from the image's os_distro
        assert props["server_type"] == "vm"
        assert props["tls_disabled"] == "False"
        assert props["public"] == "False"
        assert is_uuid(props["uuid"])
        assert "links" not in props  # the CLI drops it; it must have been in the reply
        assert "project_id" not in props  # baymodels do not show project/user
        assert "user_id" not in props
        uid = props["uuid"]

        listed = magnum("baymodel-list").ok().rows()
        assert {"uuid": uid, "name": name} in listed

        # magnum baymodel-show NAME | awk '/ uuid /{print $4}'
        awk = subprocess.run(
            ["bash", "-o", "pipefail", "-c", f"$MAGNUM baymodel-show {name} | awk '/ uuid /{{print $4}}'"],
            env=magnum_env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert awk.returncode == 0, awk
        assert awk.stdout.strip() == uid

        shown = magnum("baymodel-show", uid).ok().props()
        assert shown == props

        # the same record through the cluster-template view, which adds project/user
        as_template = magnum("cluster-template-show", name).ok().props()
        assert as_template["uuid"] == uid
        assert as_template["project_id"] and as_template["user_id"]
    finally:
        deleted = magnum("baymodel-delete", name).ok()
    assert deleted.lines == [f"Request to delete baymodel {name} has been accepted."]
    magnum("baymodel-show", name).failed()
    assert name not in magnum("baymodel-list").ok().stdout


def test_baymodel_update_labels(magnum: Magnum) -> None:
    name = unique("bm-labels")
    magnum("baymodel-create", "--name", name, *GUIDE_FLAGS, "--coe", "swarm").ok()
    try:
        # replace: the client sends the labels as a Python-literal string
        r = magnum("baymodel-update", name, "replace", "labels=a=b").ok().props()
        assert labels_of(r) == "{'a': 'b'}"
        r = magnum("baymodel-update", name, "replace", "labels=a=b,c=d").ok().props()
        assert labels_of(r) == "{'a': 'b', 'c': 'd'}"
        assert labels_of(magnum("baymodel-show", name).ok().props()) == "{'a': 'b', 'c': 'd'}"

        # add on an attribute that is set is refused (Magnum: use 'replace')
        magnum("baymodel-update", name, "add", "labels=x=y").failed()
        status, err = magnum("baymodel-update", name, "add", "labels=x=y", debug=True).http_error()
        assert status == 400
        assert "/labels" in err["title"] and "replace" in err["title"]

        # remove: labels read back as {}
        r = magnum("baymodel-update", name, "remove", "labels").ok().props()
        assert labels_of(r) in ("{}", "-")
        assert labels_of(magnum("baymodel-show", name).ok().props()) == "{}"

        # add on an unset attribute works; then remove it again
        r = magnum("baymodel-update", name, "add", "http_proxy=http://10.0.0.1:3128").ok().props()
        assert r["http_proxy"] == "http://10.0.0.1:3128"
        r = magnum("baymodel-update", name, "remove", "http_proxy").ok().props()
        assert r["http_proxy"] == "-"
    finally:
        magnum("baymodel-delete", name).ok()


# --------------------------------------------------------------------------- cluster templates


def test_cluster_template_lifecycle(magnum: Magnum, magnum_env: dict[str, str], kube_version: str) -> None:
    name = unique("ct-k8s")
    created = magnum(
        "cluster-template-create",
        name,
        "--coe",
        "kubernetes",
        "--image",
        "fedora-atomic-latest",
        "--keypair",
        "testkey",
        "--external-network",
        "public",
        "--flavor",
        "m1.small",
        "--master-flavor",
        "m1.medium",
        "--docker-volume-size",
        "5",
        "--network-driver",
        "flannel",
        "--labels",
        f"kube_tag={kube_version},foo=bar",
        "--master-lb-enabled",
        "--floating-ip-disabled",
    ).ok()
    assert TRACEBACK not in created.stderr
    props = created.props()
    try:
        assert props["name"] == name
        assert props["coe"] == "kubernetes"
        assert props["flavor_id"] == "m1.small"
        assert props["master_flavor_id"] == "m1.medium"
        assert props["network_driver"] == "flannel"
        assert props["master_lb_enabled"] == "True"
        assert props["floating_ip_enabled"] == "False"
        assert props["labels"] == f"{{'kube_tag': '{kube_version}', 'foo': 'bar'}}"
        assert props["hidden"] == "False"
        assert props["project_id"] == "admin" or props["project_id"]
        assert "links" not in props
        uid = props["uuid"]
        assert is_uuid(uid)

        assert {"uuid": uid, "name": name} in magnum("cluster-template-list").ok().rows()
        detail = magnum("cluster-template-list", "--detail").ok().rows()
        row = next(r for r in detail if r["uuid"] == uid)
        assert row["coe"] == "kubernetes"
        assert row["keypair_id"] == "testkey"
        fields = magnum("cluster-template-list", "--fields", "coe,image_id,server_type").ok().rows()
        row = next(r for r in fields if r["uuid"] == uid)  # extra columns get title-case headers
        assert (row["Coe"], row["Image Id"], row["Server Type"]) == (
            "kubernetes",
            "fedora-atomic-latest",
            "vm",
        )

        awk = subprocess.run(
            [
                "bash",
                "-o",
                "pipefail",
                "-c",
                f"$MAGNUM cluster-template-show {name} | awk '/ uuid /{{print $4}}'",
            ],
            env=magnum_env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert awk.returncode == 0, awk
        assert awk.stdout.strip() == uid
        assert magnum("cluster-template-show", uid).ok().props() == props

        # update: several replaces at once; values are JSON-decoded (5 -> int) by the client
        new_name = unique("ct-k8s-renamed")
        r = (
            magnum(
                "cluster-template-update",
                name,
                "replace",
                f"name={new_name}",
                "docker_volume_size=10",
                "labels=a=b",
                "tls_disabled=true",
            )
            .ok()
            .props()
        )
        assert r["name"] == new_name
        assert r["docker_volume_size"] == "10"
        assert r["labels"] == "{'a': 'b'}"
        assert r["tls_disabled"] == "True"
        assert r["updated_at"] not in ("", "-")
        name = new_name
        r = magnum("cluster-template-update", uid, "remove", "master_flavor_id").ok().props()
        assert r["master_flavor_id"] == "-"
        r = magnum("cluster-template-update", uid, "add", "master_flavor_id=m1.large").ok().props()
        assert r["master_flavor_id"] == "m1.large"
        shown = magnum("cluster-template-show", name).ok().props()
        assert shown["master_flavor_id"] == "m1.large"
        assert shown["labels"] == "{'a': 'b'}"
    finally:
        deleted = magnum("cluster-template-delete", name).ok()
    assert deleted.lines == [f"Request to delete cluster template {name} has been accepted."]
    magnum("cluster-template-show", uid).failed()


def test_cluster_template_delete_several(magnum: Magnum) -> None:
    names = [unique("ct-del") for _ in range(2)]
    for n in names:
        magnum("cluster-template-create", n, "--coe", "swarm", *GUIDE_FLAGS).ok()
    out = magnum("cluster-template-delete", *names).ok()
    assert out.lines == [f"Request to delete cluster template {n} has been accepted." for n in names]
    listed = magnum("cluster-template-list").ok().stdout
    assert not any(n in listed for n in names)


def test_swarm_mode_template(magnum: Magnum) -> None:
    name = unique("ct-swarm-mode")
    props = (
        magnum(
            "cluster-template-create",
            name,
            "--coe",
            "swarm-mode",
            *GUIDE_FLAGS,
            "--docker-storage-driver",
            "overlay2",
            "--labels",
            "swarm_strategy=binpack",
        )
        .ok()
        .props()
    )
    try:
        assert props["coe"] == "swarm-mode"
        assert props["docker_storage_driver"] == "overlay2"
        assert props["labels"] == "{'swarm_strategy': 'binpack'}"
    finally:
        magnum("cluster-template-delete", name).ok()


# --------------------------------------------------------------------------- lists and paging


def test_list_limit_and_sort(magnum: Magnum) -> None:
    names = sorted(unique("ct-page") for _ in range(3))
    for n in names:
        magnum("cluster-template-create", n, "--coe", "swarm", *GUIDE_FLAGS).ok()
    try:
        one = magnum("cluster-template-list", "--limit", "1").ok().rows()
        assert len(one) == 1
        everything = magnum("cluster-template-list").ok().rows()
        assert len(everything) >= 3
        assert one[0] == everything[0]  # default order: by id

        # --limit sends GET /v1/clustertemplates/?limit=1 (note the '/?')
        debug = magnum("cluster-template-list", "--limit", "1", debug=True).ok()
        assert "/v1/clustertemplates/?limit=1" in debug.stderr

        desc = magnum("cluster-template-list", "--sort-key", "name", "--sort-dir", "desc").ok().rows()
        ours = [r["name"] for r in desc if r["name"] in names]
        assert ours == list(reversed(names))
        asc = (
            magnum("cluster-template-list", "--sort-key", "name", "--sort-dir", "asc", "--limit", "2")
            .ok()
            .rows()
        )
        assert len(asc) == 2
        all_names = sorted(r["name"] for r in everything)
        assert [r["name"] for r in asc] == all_names[:2]

        # a bad sort key is a clean failure
        magnum("cluster-template-list", "--sort-key", "nope").failed()
        status, err = magnum("cluster-template-list", "--sort-key", "nope", debug=True).http_error()
        assert status == 400
        assert "nope" in err["detail"] and "sort" in err["detail"]
    finally:
        magnum("cluster-template-delete", *names).ok()


def test_limit_follows_next_links(magnum: Magnum, small_page_server: Server) -> None:
    """With pages of at most 2 (server max_limit), ``--limit 5`` needs three pages.

    The client follows ``next`` after dropping its scheme and host, so the links must be
    absolute with a path starting ``/v1/``.
    """
    srv = small_page_server
    names = [f"page-{i}-{uuid.uuid4().hex[:6]}" for i in range(5)]
    for n in names:
        magnum("cluster-template-create", n, "--coe", "swarm", *GUIDE_FLAGS, on=srv).ok()

    plain = magnum("cluster-template-list", on=srv).ok().rows()
    assert len(plain) == 2  # without --limit the client reads one page and ignores `next`

    result = magnum("cluster-template-list", "--limit", "5", on=srv, debug=True).ok()
    rows = result.rows()
    assert [r["name"] for r in rows] == names  # ordered by id = creation order
    gets = re.findall(r"curl -i -X GET .* (http://\S+)", result.stderr)
    assert len(gets) == 3, result.stderr
    assert gets[0].endswith("/v1/clustertemplates/?limit=5")
    for url in gets[1:]:
        assert "/v1/clustertemplates?" in url and "marker=" in url

    three = magnum("baymodel-list", "--limit", "3", on=srv).ok().rows()
    assert [r["name"] for r in three] == names[:3]


# --------------------------------------------------------------------------- bad input


BAD_CREATES = [
    # Magnum 15 says "Invalid input for field/attribute coe. Value: 'foo'. ..." (its WSME enum);
    # the wording is not pinned here: token mode cannot show it anyway
    pytest.param(["--coe", "foo"], 400, ("coe", "foo"), id="unknown-coe"),
    pytest.param(
        ["--coe", "swarm", "--flavor-id", "m9.huge"], 400, ("Unable to find flavor m9",), id="unknown-flavor"
    ),
    pytest.param(
        ["--coe", "swarm", "--external-network-id", "nonet"],
        400,
        ("Unable to find external network nonet",),
        id="unknown-external-network",
    ),
    pytest.param(
        ["--coe", "swarm", "--image-id", "no-such-image"], 400, ("no-such-image",), id="unknown-image"
    ),
    pytest.param(
        ["--coe", "swarm", "--docker-volume-size", "2"],
        400,
        ("docker volume size 2 GB is not valid", "devicemapper"),
        id="devicemapper-small-volume",
    ),
    pytest.param(
        ["--coe", "kubernetes", "--network-driver", "docker"],
        400,
        ("docker", "kubernetes"),
        id="bad-network-driver",
    ),
    pytest.param(["--coe", "swarm", "--server-type", "xx"], 400, ("server_type",), id="bad-server-type"),
]


def _template_create_args(name: str, overrides: list[str]) -> list[str]:
    """cluster-template-create with the guide's flags, the given ones replacing theirs."""
    base = dict(zip(GUIDE_FLAGS[::2], GUIDE_FLAGS[1::2], strict=True))
    extra: list[str] = []
    for flag, value in zip(overrides[::2], overrides[1::2], strict=True):
        if flag in base:
            base[flag] = value
        else:
            extra += [flag, value]
    flat = [x for kv in base.items() for x in kv]
    return ["cluster-template-create", name, *flat, *extra]


@pytest.mark.parametrize(("overrides", "status", "words"), BAD_CREATES)
def test_bad_template_create(
    magnum: Magnum, overrides: list[str], status: int, words: tuple[str, ...]
) -> None:
    name = unique("bad")
    args = _template_create_args(name, overrides)
    result = magnum(*args).failed()
    # 2.17 token mode shows its exception for the status (the text is in the --debug log)
    assert result.stderr.strip().splitlines()[-1] == f"ERROR: b'{token_mode_error(status)}'"
    got_status, err = magnum(*args, debug=True).http_error()
    assert got_status == status
    assert err["status"] == status and err["code"] == "client"
    assert err["title"] and err["detail"].startswith(err["title"])
    for w in words:
        assert w.lower() in err["detail"].lower()
    assert name not in magnum("cluster-template-list").ok().stdout


def test_devicemapper_without_volume_size(magnum: Magnum) -> None:
    """The 2.17 CLI defaults to devicemapper, so leaving out --docker-volume-size is a 400."""
    name = unique("bad-dm")
    args = [
        "cluster-template-create",
        name,
        "--coe",
        "swarm",
        "--image",
        "fedora-atomic-latest",
        "--external-network",
        "public",
    ]
    magnum(*args).failed()
    status, err = magnum(*args, debug=True).http_error()
    assert status == 400
    assert err["detail"] == (
        "docker volume size None GB is not valid, expecting minimum value 3GB for devicemapper storage driver."
    )


def test_bad_baymodel_dns(magnum: Magnum) -> None:
    """Baymodels take a single IPv4 nameserver (templates take a comma list)."""
    args = ["baymodel-create", "--name", unique("bad-bm"), *GUIDE_FLAGS, "--coe", "swarm"]
    args[args.index("8.8.8.8")] = "8.8.8.8,1.1.1.1"
    magnum(*args).failed()
    status, err = magnum(*args, debug=True).http_error()
    assert status == 400
    assert "dns_nameserver" in err["detail"]


def test_show_and_update_missing(magnum: Magnum) -> None:
    magnum("cluster-template-show", "no-such-template").failed()
    status, err = magnum("cluster-template-show", "no-such-template", debug=True).http_error()
    assert status == 404
    assert err["detail"] == "ClusterTemplate no-such-template could not be found."
    magnum("baymodel-show", "no-such-template").failed()
    magnum("cluster-template-update", "no-such-template", "replace", "name=x").failed()
    # delete reports the failure per item and exits 0 (client behaviour)
    out = magnum("cluster-template-delete", "no-such-template")
    assert out.returncode == 0 and TRACEBACK not in out.output
    assert out.lines == [f"Delete for cluster template no-such-template failed: {token_mode_error(404)}"]


def test_bad_updates(magnum: Magnum, swarm_template: str) -> None:
    for attrs, words in [
        (["replace", "flavor_id=m9.huge"], ("Unable to find flavor m9",)),
        (["replace", "uuid=4a6a3e1a-5b07-4a58-8b26-0d2f9b8f3c1d"], ("/uuid", "internal")),
        (["remove", "coe"], ("/coe",)),
        (["add", "nonexistent=1"], ("/nonexistent",)),
        (["replace", "docker_volume_size=abc"], ("docker_volume_size",)),
    ]:
        magnum("cluster-template-update", swarm_template, *attrs).failed()
        status, err = magnum("cluster-template-update", swarm_template, *attrs, debug=True).http_error()
        assert status == 400, (attrs, err)
        for w in words:
            assert w in err["detail"], (attrs, err)
    # nothing changed
    props = magnum("cluster-template-show", swarm_template).ok().props()
    assert props["flavor_id"] == "m1.small"
    assert props["coe"] == "swarm"


def test_reader_cannot_create(magnum: Magnum, server: Server) -> None:
    reader = server.token_create("compat-p", "rita", "reader")
    member = server.token_create("compat-p", "alice", "member")
    name = unique("ct-member")
    args = ["cluster-template-create", name, "--coe", "swarm", *GUIDE_FLAGS]

    magnum(*args, token=reader).failed()
    status, _err = magnum(*args, token=reader, debug=True).http_error()
    assert status == 403

    props = magnum(*args, token=member).ok().props()
    try:
        assert props["project_id"] == "compat-p"
        # the reader sees it, another project does not
        assert name in magnum("cluster-template-list", token=reader).ok().stdout
        other = server.token_create("compat-q", "bob", "member")
        assert name not in magnum("cluster-template-list", token=other).ok().stdout
        magnum("cluster-template-show", name, token=other).failed()
    finally:
        magnum("cluster-template-delete", name, token=member).ok()


def test_bad_token(magnum: Magnum) -> None:
    result = magnum("cluster-template-list", token="not-a-token").failed()
    assert "ERROR" in result.stderr
