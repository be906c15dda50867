"""Declarative request fields: types, bounds, defaults and read-only rules as data.

Each resource declares a tuple of :class:`Field`; :func:`parse_body` turns a JSON
object into clean Python values or raises ``Invalid`` with Magnum's wording
(``Invalid input for field/attribute X. Value: 'v'. <reason>``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from flotilla.errors import Invalid
from flotilla.idents import is_uuid

Kind = Literal["str", "int", "number", "bool", "labels", "strlabels", "uuid", "strlist", "dict"]

_TRUE = {"true", "t", "yes", "y", "on", "1"}
_FALSE = {"false", "f", "no", "n", "off", "0"}


@dataclass(frozen=True)
class Field:
    name: str
    kind: Kind = "str"
    mandatory: bool = False
    readonly: bool = False
    minimum: int | None = None
    maximum: int | None = None
    min_len: int | None = None
    max_len: int | None = 255
    pattern: str | None = None
    choices: tuple[str, ...] | None = None
    nullable: bool = True


def invalid(field: str, value: Any, reason: str) -> Invalid:
    return Invalid(f"Invalid input for field/attribute {field}. Value: '{value}'. {reason}")


def parse_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        low = value.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    raise invalid(name, value, "Wrong type. Expected a boolean (true/false).")


def _label_value(v: Any) -> str:
    if isinstance(v, bool):
        return "True" if v else "False"
    return str(v)


def coerce(f: Field, value: Any) -> Any:
    """One value of field ``f``, checked and converted; None passes for nullable fields."""
    if value is None:
        if f.mandatory or not f.nullable:
            raise invalid(f.name, None, "Mandatory field missing.")
        return None
    if f.kind == "bool":
        return parse_bool(f.name, value)
    if f.kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise invalid(f.name, value, "Wrong type. Expected a number.")
        if f.minimum is not None and value < f.minimum:
            raise invalid(f.name, value, f"Value should be greater or equal to {f.minimum}")
        if f.maximum is not None and value > f.maximum:
            raise invalid(f.name, value, f"Value should be lower or equal to {f.maximum}")
        return float(value)
    if f.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid(f.name, value, "Wrong type. Expected an integer.")
        if f.minimum is not None and value < f.minimum:
            raise invalid(f.name, value, f"Value should be greater or equal to {f.minimum}")
        if f.maximum is not None and value > f.maximum:
            raise invalid(f.name, value, f"Value should be lower or equal to {f.maximum}")
        return value
    if f.kind in ("labels", "strlabels", "dict"):
        if not isinstance(value, dict):
            raise invalid(f.name, value, "Wrong type. Expected an object of key=value pairs.")
        out: dict[str, Any] = {}
        for k, v in value.items():
            if f.kind == "strlabels" and not isinstance(v, str):
                raise invalid(f.name, value, f"Label {k} must have a string value.")
            if f.kind == "dict":
                out[str(k)] = v if isinstance(v, str) else _label_value(v)
            elif isinstance(v, dict | list) or v is None:
                raise invalid(f.name, value, f"Label {k} must be a string, number or boolean.")
            else:
                out[str(k)] = _label_value(v)
        return out
    if f.kind == "strlist":
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            raise invalid(f.name, value, "Wrong type. Expected a list of strings.")
        return list(value)
    # str / uuid
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise invalid(f.name, value, "Wrong type. Expected a string.")
    text = str(value)
    if f.kind == "uuid" and not is_uuid(text):
        raise invalid(f.name, text, "Expected a UUID.")
    if f.min_len is not None and len(text) < f.min_len:
        raise invalid(f.name, text, f"Value should have a minimum character requirement of {f.min_len}")
    if f.max_len is not None and len(text) > f.max_len:
        raise invalid(f.name, text, f"Value should have a maximum character requirement of {f.max_len}")
    if f.pattern is not None and not re.match(f.pattern, text):
        raise invalid(f.name, text, f"Value should match the pattern {f.pattern}")
    if f.choices is not None and text not in f.choices:
        raise invalid(f.name, text, f"Value should be one of: {', '.join(f.choices)}")
    return text


def parse_body(
    body: Any,
    fields: Iterable[Field],
    *,
    argument: str,
    ignore: Iterable[str] = (),
) -> dict[str, Any]:
    """Validate a create body: unknown keys and read-only keys are refused.

    Returns only the keys present in ``body`` (explicit nulls included), converted.
    """
    if not isinstance(body, dict):
        raise Invalid(f"Invalid input for argument {argument}: expected a JSON object.")
    spec = {f.name: f for f in fields}
    skip = set(ignore)
    out: dict[str, Any] = {}
    for key, value in body.items():
        if key in skip:
            continue
        f = spec.get(key)
        if f is None:
            raise Invalid(f"Unknown attribute for argument {argument}: {key}")
        if f.readonly:
            raise invalid(key, value, "Cannot set read only field.")
        out[key] = coerce(f, value)
    for f in spec.values():
        if f.mandatory and out.get(f.name) is None:
            raise invalid(f.name, None, "Mandatory field missing.")
    return out


def check_all(values: Mapping[str, Any], fields: Iterable[Field]) -> dict[str, Any]:
    """Re-check a whole object after a PATCH (reference §5: everything is type-checked again)."""
    out = dict(values)
    for f in fields:
        if f.readonly or f.name not in values:
            continue
        out[f.name] = coerce(f, values[f.name])
    return out
