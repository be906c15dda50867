"""What ``/openapi.json`` cannot learn from the routers by itself.

The routers read raw JSON (``deps.json_body``) and check query parameters by hand, so
Magnum's own error messages come out for every type problem; FastAPI therefore sees no
request bodies and no query parameters. :func:`describe` adds them to the generated
document, from the same :class:`~flotilla.api.fields.Field` declarations the routers
validate with where they exist, plus the ``X-Auth-Token`` scheme and the error body.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fastapi import FastAPI

from flotilla.api.fields import Field
from flotilla.api.v1.clusters import BAY_FIELDS, CLUSTER_FIELDS
from flotilla.api.v1.clustertemplates import BAYMODEL_FIELDS, TEMPLATE_FIELDS
from flotilla.api.v1.quotas import QUOTA_FIELDS
from flotilla.services import certificates

#: Routes served without a token (reference §1).
PUBLIC = frozenset({"/", "/v1", "/healthcheck"})

# Bodies whose fields are declared inline in their handlers (keep in step with them).
RESIZE_FIELDS = (
    Field("node_count", "int", mandatory=True, minimum=0),
    Field("nodes_to_remove", "strlist"),
    Field("nodegroup", min_len=1),
)
UPGRADE_FIELDS = (
    Field("cluster_template", mandatory=True, min_len=1),
    Field("max_batch_size", "int", minimum=1),
    Field("nodegroup", min_len=1),
)
CERTIFICATE_FIELDS = (
    Field("cluster_uuid", min_len=1),
    Field("bay_uuid", min_len=1),
    Field("csr", mandatory=True, max_len=65536),
    Field("ca_cert_type"),
)
FLAVOR_FIELDS = (
    Field("name", mandatory=True, min_len=1),
    Field("vcpus", "number", mandatory=True, minimum=0),
    Field("ram_mb", "int", mandatory=True, minimum=64),
)
NETWORK_FIELDS = (Field("name", mandatory=True, min_len=1), Field("external", "bool"))
IMAGE_FIELDS = (
    Field("name", mandatory=True, min_len=1),
    Field("os_distro", min_len=1),
    Field("source", min_len=1),
    Field("build_method", min_len=1),
    Field("replace", "bool"),
)
KEYPAIR_FIELDS = (
    Field("name", mandatory=True, min_len=1),
    Field("public_key", mandatory=True, max_len=16384),
)

#: (method, path) -> the components/schemas name of its JSON body.
BODIES: dict[tuple[str, str], str] = {
    ("post", "/v1/clustertemplates"): "ClusterTemplateCreate",
    ("post", "/v1/baymodels"): "BayModelCreate",
    ("post", "/v1/clusters"): "ClusterCreate",
    ("post", "/v1/bays"): "BayCreate",
    ("post", "/v1/clusters/{ident}/actions/resize"): "ClusterResize",
    ("post", "/v1/clusters/{ident}/actions/upgrade"): "ClusterUpgrade",
    ("post", "/v1/certificates"): "CertificateSign",
    ("post", "/v1/quotas"): "QuotaCreate",
    ("patch", "/v1/quotas/{project_id}/{resource}"): "QuotaUpdate",
    ("post", "/local/v1/flavors"): "FlavorCreate",
    ("post", "/local/v1/networks"): "NetworkCreate",
    ("post", "/local/v1/images"): "ImageCreate",
    ("post", "/local/v1/keypairs"): "KeypairCreate",
    **{
        ("patch", f"/v1/{coll}/{{ident}}"): "JsonPatch"
        for coll in ("clustertemplates", "baymodels", "clusters", "bays")
    },
}
OBJECTS: dict[str, tuple[Field, ...]] = {
    "ClusterTemplateCreate": TEMPLATE_FIELDS,
    "BayModelCreate": BAYMODEL_FIELDS,
    "ClusterCreate": CLUSTER_FIELDS,
    "BayCreate": BAY_FIELDS,
    "ClusterResize": RESIZE_FIELDS,
    "ClusterUpgrade": UPGRADE_FIELDS,
    "CertificateSign": CERTIFICATE_FIELDS,
    "QuotaCreate": QUOTA_FIELDS,
    "QuotaUpdate": QUOTA_FIELDS,
    "FlavorCreate": FLAVOR_FIELDS,
    "NetworkCreate": NETWORK_FIELDS,
    "ImageCreate": IMAGE_FIELDS,
    "KeypairCreate": KEYPAIR_FIELDS,
}

_PAGING = ("limit", "marker", "sort_key", "sort_dir")
#: (method, path) -> the query parameters the handler accepts (any other one is a 400).
QUERIES: dict[tuple[str, str], tuple[str, ...]] = {
    **{("get", f"/v1/{c}"): _PAGING for c in ("clustertemplates", "baymodels", "clusters", "bays")},
    **{("get", f"/v1/{c}/detail"): _PAGING for c in ("clustertemplates", "baymodels", "clusters", "bays")},
    ("patch", "/v1/clusters/{ident}"): ("rollback",),
    ("patch", "/v1/bays/{ident}"): ("rollback",),
    ("get", "/v1/certificates/{ident}"): ("ca_cert_type",),
    ("get", "/v1/quotas"): (*_PAGING, "all_tenants"),
    ("get", "/v1/stats"): ("project_id", "type"),
    ("get", "/v1/clusters/{cluster_ident}/nodegroups"): ("role", *_PAGING),
}
QUERY_SCHEMAS: dict[str, dict[str, Any]] = {
    "limit": {"type": "integer", "minimum": 1},
    "marker": {"type": "string"},
    "sort_key": {"type": "string"},
    "sort_dir": {"type": "string", "enum": ["asc", "desc"]},
    "rollback": {"type": "boolean"},
    "all_tenants": {"type": "boolean"},
    "ca_cert_type": {"type": "string"},  # enum: the COE drivers' values, added in the schema below
    "project_id": {"type": "string"},
    "type": {"type": "string", "enum": ["cluster"]},
    "role": {"type": "string", "enum": ["master", "worker"]},
}

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["errors"],
    "properties": {
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["code", "status", "title", "detail"],
                "properties": {
                    "request_id": {"type": "string"},
                    "code": {"type": "string", "enum": ["client", "server", ""]},
                    "status": {"type": "integer"},
                    "title": {"type": "string"},
                    "detail": {"type": "string"},
                    "links": {"type": "array"},
                },
            },
        }
    },
}
JSON_PATCH_SCHEMA: dict[str, Any] = {
    "type": "array",
    "description": "Magnum's JSON-Patch dialect (add, replace, remove; string or integer values).",
    "items": {
        "type": "object",
        "required": ["op", "path"],
        "additionalProperties": False,
        "properties": {
            "op": {"type": "string", "enum": ["add", "replace", "remove"]},
            "path": {"type": "string", "pattern": r"^(/[\w-]+)+$"},
            "value": {"type": ["string", "integer", "object", "null"]},
        },
    },
}


def field_schema(f: Field) -> dict[str, Any]:
    """The JSON schema of one request field (null is allowed for optional ones)."""
    out: dict[str, Any]
    if f.kind in ("int", "number"):
        out = {"type": "integer" if f.kind == "int" else "number"}
        if f.minimum is not None:
            out["minimum"] = f.minimum
        if f.maximum is not None:
            out["maximum"] = f.maximum
    elif f.kind == "bool":
        out = {"type": "boolean"}
    elif f.kind in ("labels", "strlabels", "dict"):
        values: dict[str, Any] = (
            {"type": "string"}
            if f.kind == "strlabels"
            else {"type": ["string", "integer", "number", "boolean"]}
        )
        out = {"type": "object", "additionalProperties": values}
    elif f.kind == "strlist":
        out = {"type": "array", "items": {"type": "string"}}
    else:
        out = {"type": "string"}
        if f.kind == "uuid":
            out["format"] = "uuid"
        if f.min_len is not None:
            out["minLength"] = f.min_len
        if f.max_len is not None:
            out["maxLength"] = f.max_len
        if f.pattern is not None:
            out["pattern"] = f.pattern
        if f.choices is not None:
            out["enum"] = list(f.choices)
    if not f.mandatory and f.nullable:
        out = {"anyOf": [out, {"type": "null"}]}
    return out


def object_schema(fields: Iterable[Field]) -> dict[str, Any]:
    """Writable fields only: read-only and unknown attributes are refused with 400."""
    writable = [f for f in fields if not f.readonly]
    out: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {f.name: field_schema(f) for f in writable},
    }
    required = [f.name for f in writable if f.mandatory]
    if required:
        out["required"] = required
    return out


def augment(schema: dict[str, Any]) -> dict[str, Any]:
    """Add bodies, query parameters, the token scheme and the error body to ``schema`` (in place)."""
    info = schema.setdefault("info", {})
    if info.get("x-flotilla-described"):
        return schema
    info["x-flotilla-described"] = True
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    schemas["JsonPatch"] = JSON_PATCH_SCHEMA
    for name, fields in OBJECTS.items():
        schemas[name] = object_schema(fields)
    components.setdefault("securitySchemes", {})["token"] = {
        "type": "apiKey",
        "in": "header",
        "name": "X-Auth-Token",
    }
    schema["security"] = [{"token": []}]
    error_ref = {"$ref": "#/components/schemas/Error"}
    for path, operations in schema.get("paths", {}).items():
        for method, op in operations.items():
            if path in PUBLIC:
                op["security"] = []
            body = BODIES.get((method, path))
            if body is not None:
                op["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}},
                }
            params = op.setdefault("parameters", [])
            for name in QUERIES.get((method, path), ()):
                query = QUERY_SCHEMAS[name]
                if name == "ca_cert_type":
                    query = {**query, "enum": list(certificates.ca_cert_types())}
                params.append({"name": name, "in": "query", "required": False, "schema": query})
            if not params:
                del op["parameters"]
            responses = op.setdefault("responses", {})
            responses.pop("422", None)  # validation errors are Magnum 400s, never 422
            responses["default"] = {
                "description": "Magnum's error body (4xx/5xx)",
                "content": {"application/json": {"schema": error_ref}},
            }
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    return schema


def describe(app: FastAPI) -> None:
    """Make ``app.openapi()`` (and so ``/openapi.json``) return the augmented document."""
    if getattr(app.state, "openapi_described", False):
        return
    app.state.openapi_described = True
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = augment(generate())
        return app.openapi_schema

    if app.openapi_schema is not None:
        augment(app.openapi_schema)
    app.openapi = openapi  # type: ignore[method-assign]
