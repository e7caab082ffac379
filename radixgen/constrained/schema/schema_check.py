"""Keyword bookkeeping for the JSON-schema converter: which keywords exist, which types a
schema admits, which keywords are refused, and a small validator for enum / const values."""
from __future__ import annotations

import math
import re
from typing import Any

from ..errors import UnsupportedSchemaError

OBJECT_KEYWORDS = frozenset({"properties", "required", "additionalProperties", "patternProperties",
                             "propertyNames", "minProperties", "maxProperties", "dependencies",
                             "dependentRequired", "dependentSchemas", "unevaluatedProperties"})
ARRAY_KEYWORDS = frozenset({"items", "prefixItems", "additionalItems", "minItems", "maxItems",
                            "uniqueItems", "contains", "minContains", "maxContains",
                            "unevaluatedItems"})
STRING_KEYWORDS = frozenset({"minLength", "maxLength", "pattern", "format"})
NUMBER_KEYWORDS = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
                             "multipleOf"})
_FAMILY = {"object": OBJECT_KEYWORDS, "array": ARRAY_KEYWORDS, "string": STRING_KEYWORDS,
           "number": NUMBER_KEYWORDS, "integer": NUMBER_KEYWORDS}
ALL_TYPES = ("object", "array", "string", "number", "boolean", "null")
# Validation keywords a regex cannot honour (in the types where they apply).
REFUSED = ("unevaluatedProperties", "unevaluatedItems", "contains",
           "minContains", "maxContains", "$dynamicRef", "$recursiveRef")


def infer_types(schema: dict) -> list[str] | None:
    """The JSON types `schema` may produce; None for "any value".

    Without "type", the families of the keywords present decide (a `properties` schema yields
    objects): a narrowing, since such a schema would also accept every other type.
    """
    declared = schema.get("type")
    if isinstance(declared, str):
        types = [declared]
    elif isinstance(declared, list):
        types = list(dict.fromkeys(declared))
    else:
        types = [t for t in ("object", "array", "string", "number") if _FAMILY[t] & schema.keys()]
        if not types:
            return None
    if "integer" in types and "number" in types:  # every integer is a number
        types.remove("integer")
    return types


def check_keywords(schema: dict, ptr: str) -> None:
    """Raise UnsupportedSchemaError for a keyword that cannot be honoured."""
    types = infer_types(schema) or list(ALL_TYPES)
    for kw in REFUSED:
        if kw in schema and _applies(kw, types):
            raise UnsupportedSchemaError(kw, f"{ptr}/{kw}", "not expressible as a regular language")


def _applies(kw: str, types: list[str]) -> bool:
    return any(kw in _FAMILY.get(t, ()) for t in types) or not any(kw in f for f in _FAMILY.values())


def _type_ok(value: Any, t: str) -> bool:
    if t == "null":
        return value is None
    if t == "boolean":
        return isinstance(value, bool)
    if t == "integer":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer()
    if t == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t == "string":
        return isinstance(value, str)
    if t == "array":
        return isinstance(value, list)
    return t == "object" and isinstance(value, dict)


def instance_ok(value: Any, s: dict) -> bool:
    """Whether an enum/const `value` also meets the sibling keywords of `s` that can rule a
    scalar out (type, enum/const, string and number constraints)."""
    declared = s.get("type")
    if declared is not None:
        types = [declared] if isinstance(declared, str) else declared
        if not any(_type_ok(value, t) for t in types):
            return False
    if "const" in s and "enum" in s and not any(same_value(value, e) for e in s["enum"]):
        return False
    if isinstance(value, str):
        if len(value) < s.get("minLength", 0) or len(value) > s.get("maxLength", math.inf):
            return False
        if isinstance(s.get("pattern"), str) and not re.search(s["pattern"], value):
            return False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        lo, hi = s.get("minimum", -math.inf), s.get("maximum", math.inf)
        if value < lo or value > hi:
            return False
        for kw, bad in (("exclusiveMinimum", lambda b: value <= b), ("exclusiveMaximum", lambda b: value >= b)):
            b = s.get(kw)
            if b is True and bad(lo if kw == "exclusiveMinimum" else hi):
                return False
            if isinstance(b, (int, float)) and not isinstance(b, bool) and bad(b):
                return False
    return True


def same_value(a: Any, b: Any) -> bool:
    """JSON equality: 1 == 1.0, but True != 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b
