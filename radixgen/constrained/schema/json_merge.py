"""allOf: fold several schemas into one whose instances are those valid under all of them.

Keywords combine by meaning (types intersect, bounds tighten, required unite, properties merge
key by key). Two keywords that only a regex intersection could combine (two different
patterns, formats, patternProperties) are refused rather than approximated.
"""
from __future__ import annotations

from typing import Any, Callable

from ..errors import UnsupportedSchemaError
from .json_object import FORBID, pattern_matches
from .schema_check import same_value

Resolve = Callable[[str], Any]
ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$schema", "$id", "id",
                         "$comment", "definitions", "$defs", "readOnly", "writeOnly", "deprecated"})
_LOWER = ("minimum", "minLength", "minItems", "minProperties")
_UPPER = ("maximum", "maxLength", "maxItems", "maxProperties")
_SUBSCHEMAS = ("items", "additionalProperties", "additionalItems", "propertyNames")
MAX_CROSS = 64
NOT_IN = "x-radixgen-not-in"  # values an instance must differ from (json_not.py)


def merge_all(parts: list[Any], resolve: Resolve, ptr: str) -> Any:
    """One schema (dict, or False) equivalent to allOf(parts); top-level $ref / allOf inlined."""
    flat: list[Any] = []
    for p in parts:
        _flatten(p, resolve, ptr, flat, 0)
    if any(p is False for p in flat):
        return False
    out: dict = {}
    for p in flat:
        out = merge2(out, p, ptr)
    return out


def _flatten(p: Any, resolve: Resolve, ptr: str, out: list, depth: int) -> None:
    if depth > 32:
        raise UnsupportedSchemaError("allOf", ptr, "allOf / $ref nesting too deep (a cycle?)")
    if p is True or p == {}:
        return
    if p is False:
        out.append(False)
        return
    if not isinstance(p, dict):
        raise UnsupportedSchemaError("allOf", ptr, f"not a schema: {p!r:.40}")
    if "$ref" in p or "allOf" in p:
        rest = {k: v for k, v in p.items() if k not in ("$ref", "allOf")}
        if "$ref" in p:
            _flatten(resolve(p["$ref"]), resolve, ptr, out, depth + 1)
        for q in p.get("allOf", []):
            _flatten(q, resolve, ptr, out, depth + 1)
        _flatten(rest, resolve, ptr, out, depth + 1)
        return
    out.append(p)


def _types(t: Any) -> set[str]:
    return {t} if isinstance(t, str) else set(t)


def _type_meet(a: Any, b: Any) -> list[str]:
    ta, tb = _types(a), _types(b)
    out = ta & tb
    if "integer" in ta and "number" in tb or "number" in ta and "integer" in tb:
        out.add("integer")
    return sorted(out)


def _conj(a: Any, b: Any) -> Any:
    if a is False or b is False:
        return False
    if a is True or a == {}:
        return b
    if b is True or b == {}:
        return a
    return {"allOf": [a, b]}


def _closed_over(x: dict, y: dict, props: dict) -> None:
    """Properties only `y` declares must also satisfy `x`'s additionalProperties."""
    ap = x.get("additionalProperties", True)
    if ap is True:
        return
    x_props, x_patterns = x.get("properties") or {}, x.get("patternProperties") or {}
    for key in y.get("properties") or {}:
        if key not in x_props and not any(pattern_matches(p, key) for p in x_patterns):
            props[key] = _conj(props[key], ap)


def merge2(a: dict, b: dict, ptr: str) -> dict:
    out = dict(a)
    for k, v in b.items():
        if k not in out:
            out[k] = v
            continue
        u = out[k]
        if k in ANNOTATIONS or u == v:
            continue
        if k == "type":
            out[k] = _type_meet(u, v)
        elif k == "properties":
            out[k] = {**u, **{pk: _conj(u[pk], pv) if pk in u else pv for pk, pv in v.items()}}
        elif k in ("required", FORBID, NOT_IN):
            out[k] = list(dict.fromkeys([*u, *v]))
        elif k in _LOWER or k in _UPPER:
            out[k] = max(u, v) if k in _LOWER else min(u, v)
        elif k in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(u, bool) \
                and not isinstance(v, bool):
            out[k] = max(u, v) if k == "exclusiveMinimum" else min(u, v)
        elif k in _SUBSCHEMAS:
            out[k] = _conj(u, v)
        elif k in ("enum", "const"):
            vals_u = [u] if k == "const" else u
            vals_v = [v] if k == "const" else v
            out.pop("const", None)
            out["enum"] = [x for x in vals_u if any(same_value(x, y) for y in vals_v)]
        elif k == "uniqueItems":
            out[k] = bool(u or v)
        elif k == "not":
            out[k] = {"anyOf": [u, v]}  # not A and not B = not (A or B)
        elif k == "anyOf" and len(u) * len(v) <= MAX_CROSS:
            out[k] = [_conj(x, y) for x in u for y in v]
        else:
            raise UnsupportedSchemaError("allOf", ptr, f"cannot combine two different {k!r}")
    if "properties" in out:
        out["properties"] = dict(out["properties"])
        _closed_over(a, b, out["properties"])
        _closed_over(b, a, out["properties"])
    if "const" in out and "enum" in out:
        const = out.pop("const")
        out["enum"] = [x for x in out["enum"] if same_value(x, const)]
    return out
