"""HTML form fields -> the API's request bodies, so the API's own field table
(``api.fields.parse_body``) checks them and the dashboard shows the API's messages.

Browsers send every value as text: numbers that look like integers become ints,
anything else is passed through as text so the API's "Expected an integer" message
reaches the person; check boxes become booleans; labels use the CLI's
``KEY1=VALUE1,KEY2=VALUE2;KEY3=VALUE3`` syntax.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from flotilla.errors import Invalid

_INT_RE = re.compile(r"^[+-]?\d{1,12}$")

TEMPLATE_TEXT = (
    "name", "coe", "image_id", "keypair_id", "external_network_id", "fixed_network", "fixed_subnet",
    "network_driver", "volume_driver", "dns_nameserver", "flavor_id", "master_flavor_id",
    "docker_storage_driver", "http_proxy", "https_proxy", "no_proxy", "server_type",
)  # fmt: skip
TEMPLATE_INT = ("docker_volume_size",)
TEMPLATE_BOOL = ("tls_disabled", "registry_enabled", "master_lb_enabled")
TEMPLATE_ADMIN_BOOL = ("public", "hidden")

CLUSTER_TEXT = ("cluster_template_id", "name", "keypair")
CLUSTER_INT = ("master_count", "node_count", "create_timeout")

#: Words of a service message -> the form field it is about (for the inline hint).
_MESSAGE_FIELDS: tuple[tuple[str, str], ...] = (
    ("requested coe type", "coe"),
    ("image ", "image_id"),
    ("keypair", "keypair_id"),
    ("external network", "external_network_id"),
    ("network driver", "network_driver"),
    ("volume driver", "volume_driver"),
    ("storage driver", "docker_storage_driver"),
    ("docker volume size", "docker_volume_size"),
    ("label", "labels"),
    ("dns", "dns_nameserver"),
    ("cluster type", "coe"),
    ("master_count", "master_count"),
    ("node_count", "node_count"),
)


def text(form: Mapping[str, str], key: str) -> str | None:
    value = form.get(key, "").strip()
    return value or None


def integer(form: Mapping[str, str], key: str) -> int | str | None:
    value = text(form, key)
    if value is None:
        return None
    return int(value) if _INT_RE.match(value) else value


def checkbox(form: Mapping[str, str], key: str) -> bool:
    return form.get(key, "").lower() in ("on", "true", "1", "yes")


def labels(form: Mapping[str, str], key: str = "labels") -> dict[str, str] | None:
    """``a=1,b=2;c=3`` -> ``{"a": "1", "b": "2", "c": "3"}``; a repeated key joins its
    values with ``,`` (python-magnumclient's rule). Raises Invalid on a piece without ``=``."""
    raw = text(form, key)
    if raw is None:
        return None
    out: dict[str, str] = {}
    for piece in re.split(r"[,;\n]", raw):
        piece = piece.strip()
        if not piece:
            continue
        name, sep, value = piece.partition("=")
        if not sep or not name.strip():
            raise Invalid(f"Labels must be a list of KEY=VALUE pairs, not '{piece}' (e.g. a=1,b=2).")
        name = name.strip()
        out[name] = f"{out[name]},{value.strip()}" if name in out else value.strip()
    return out


def _body(
    form: Mapping[str, str], texts: Iterable[str], ints: Iterable[str], bools: Iterable[str]
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for key in texts:
        if (value := text(form, key)) is not None:
            body[key] = value
    for key in ints:
        if (number := integer(form, key)) is not None:
            body[key] = number
    for key in bools:
        body[key] = checkbox(form, key)
    return body


def template_body(form: Mapping[str, str], *, admin: bool) -> dict[str, Any]:
    """The ``POST /v1/clustertemplates`` body for the template form."""
    body = _body(form, TEMPLATE_TEXT, TEMPLATE_INT, TEMPLATE_BOOL)
    for key in TEMPLATE_ADMIN_BOOL:
        # Only admins see these boxes; anyone else who sends them gets the API's 403.
        if admin or key in form:
            body[key] = checkbox(form, key)
    if (parsed := labels(form)) is not None:
        body["labels"] = parsed
    return body


def cluster_body(form: Mapping[str, str]) -> dict[str, Any]:
    """The ``POST /v1/clusters`` body for the cluster form."""
    body = _body(form, CLUSTER_TEXT, CLUSTER_INT, ())
    if (parsed := labels(form)) is not None:
        body["labels"] = parsed
        body["merge_labels"] = checkbox(form, "merge_labels")
    return body


def error_field(message: str, form: Mapping[str, str]) -> str | None:
    """The form field a service message is about, for the inline hint (None: the whole form)."""
    named = re.search(r"field/attribute (\w+)", message)
    if named:
        return named.group(1)
    low = message.lower()
    if "flavor" in low:
        # "Unable to find flavor X": the field whose value is X.
        for key in ("master_flavor_id", "flavor_id"):
            if form.get(key) and f"flavor {form[key].strip()}." in message:
                return key
        return "flavor_id"
    if "keypair" in low and "keypair" in form:
        return "keypair"
    if "clustertemplate" in low.replace(" ", "") and "cluster_template_id" in form:
        return "cluster_template_id"
    for words, key in _MESSAGE_FIELDS:
        if words in low:
            return key
    return None
