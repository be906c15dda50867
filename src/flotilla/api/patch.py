"""Magnum's JSON-Patch dialect (reference §5) applied to a resource's representation."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

import jsonpatch

from flotilla import safetext
from flotilla.errors import Invalid

PATH_RE = re.compile(r"^(/[\w-]+)+$")
COMMON_INTERNAL = frozenset(
    {"/created_at", "/id", "/links", "/updated_at", "/uuid", "/project_id", "/user_id"}
)
LITERAL_PATHS = frozenset({"/labels", "/health_status_reason"})


def parse_patch(
    patch: Any,
    *,
    internal: Iterable[str] = (),
    non_removable: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """Check ``patch`` on its own (before the resource is looked up, as Magnum does).

    Returns the operations with literal values evaluated. Raises ``Invalid`` with
    Magnum's messages for each rule of the dialect.
    """
    if not isinstance(patch, list):
        raise Invalid(f"Invalid input for field/attribute patch. Value: '{patch}'. Value not a valid list")
    internal_set = COMMON_INTERNAL | set(internal)
    keep = set(non_removable)
    ops: list[dict[str, Any]] = []
    for item in patch:
        if not isinstance(item, dict):
            raise Invalid(f"Invalid input for field/attribute patch. Value: '{item}'. Expected an object.")
        op, path = item.get("op"), item.get("path")
        if op not in ("add", "replace", "remove"):
            raise Invalid(
                f"Invalid input for field/attribute op. Value: '{op}'. Value should be one of: add, replace, remove"
            )
        if not isinstance(path, str) or not PATH_RE.match(path):
            raise Invalid(f"Invalid input for field/attribute path. Value: '{path}'. Invalid patch path")
        root = "/" + path.split("/")[1]
        if root in internal_set:
            raise Invalid(f"'{root}' is an internal attribute and can not be updated")
        if op == "remove":
            if root in keep and path == root:
                raise Invalid(f"'{root}' is a mandatory attribute and can not be removed")
            ops.append({"op": "remove", "path": path})
            continue
        if "value" not in item:
            raise Invalid(f"Invalid input for field/attribute value. Value: 'None'. '{op}' needs a value.")
        value = item["value"]
        if path in LITERAL_PATHS and isinstance(value, str):
            value = _literal(value)
            problem = safetext.find_problem(value)
            if problem is not None:
                raise Invalid(problem.message(f"The value of {path}"))
        elif path in LITERAL_PATHS and isinstance(value, dict):
            pass  # JSON objects are accepted for labels too.
        elif value is not None and not isinstance(value, str | int):
            raise Invalid(
                f"Invalid input for field/attribute value. Value: '{value}'. Wrong type. Expected '(str, int)'"
            )
        ops.append({"op": op, "path": path, "value": value})
    return ops


def apply_ops(doc: Mapping[str, Any], ops: list[dict[str, Any]], patch: Any) -> dict[str, Any]:
    """Apply operations from :func:`parse_patch` to a copy of ``doc`` (``patch`` is for messages)."""
    ready: list[dict[str, Any]] = []
    for item in ops:
        path = item["path"]
        root = "/" + path.split("/")[1]
        if item["op"] == "add" and path == root:
            if root[1:] not in doc:
                raise Invalid(f"Adding a new attribute {root} to the root of the resource is not allowed.")
            if doc[root[1:]] is not None:
                raise Invalid(f"The attribute {root} has existed, please use 'replace' operation instead.")
            item = {**item, "op": "replace"}
        ready.append(item)
    current = json.loads(json.dumps(doc, default=str))
    try:
        result = jsonpatch.apply_patch(current, ready)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        raise Invalid(f"Couldn't apply patch '{patch}'. Reason: {exc}") from None
    if not isinstance(result, dict):
        raise Invalid(f"Couldn't apply patch '{patch}'. Reason: the result is not an object")
    for item in ready:
        if item["op"] == "remove" and item["path"].count("/") == 1:
            result[item["path"][1:]] = None
    return result


def apply_patch(
    doc: Mapping[str, Any],
    patch: Any,
    *,
    internal: Iterable[str] = (),
    non_removable: Iterable[str] = (),
) -> dict[str, Any]:
    """Validate ``patch`` and apply it to a copy of ``doc`` (:func:`parse_patch` + :func:`apply_ops`)."""
    return apply_ops(doc, parse_patch(patch, internal=internal, non_removable=non_removable), patch)


def _literal(text: str) -> Any:
    if len(text) > 65536:
        raise Invalid("Couldn't apply patch: the value is longer than 65536 characters.")
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        try:
            return json.loads(text)
        except ValueError:
            raise Invalid(
                f"Couldn't apply patch: the value '{text}' is not a valid literal ({exc})."
            ) from None
