"""`not` and `if`/`then`/`else` by sound narrowing: a schema whose every instance fails the
negated one (never one that lets an instance of it through).

negate(N) works keyword by keyword: N is the conjunction of its keywords, so an instance that
fails any one of them fails N, and the union of the negations we can write is a subset of not-N
(exact when every keyword could be negated). A keyword that constrains one family of types
(minimum: numbers, required: objects, ...) holds for every other type, so only instances of its
family can fail it: the negation is typed, e.g. minimum m -> a number < m, minLength n -> a
string shorter than n, required [k] -> an object without k, properties {k: S} -> an object with
k failing S, propertyNames P -> an object with a key failing P when that key can be named; type
T -> any other type; enum -> other types, longer strings, larger numbers (or the enum's own
candidates filtered). What cannot be negated (pattern, format, additionalProperties, ...) is
left out of the union; with nothing left the schema is refused with the keyword that stopped it.

if/then/else: (if and then) or (not-if and else), the second branch only where not-if can be
written (else the narrowing keeps only instances that take the `then` branch).
"""
from __future__ import annotations

from typing import Any, Callable

from ..errors import UnsupportedSchemaError
from .json_merge import ANNOTATIONS, NOT_IN, merge_all
from .json_object import FORBID
from .schema_check import ALL_TYPES, ARRAY_KEYWORDS, NUMBER_KEYWORDS, OBJECT_KEYWORDS, STRING_KEYWORDS

Resolve = Callable[[str], Any]
_FAMILIES = (("object", OBJECT_KEYWORDS), ("array", ARRAY_KEYWORDS), ("string", STRING_KEYWORDS),
             ("number", NUMBER_KEYWORDS))
# keywords whose meaning depends on a sibling: negated together or not at all
_TOGETHER = ({"properties", "patternProperties", "additionalProperties"}, {"items", "prefixItems", "additionalItems"},
             {"contains", "minContains", "maxContains"})
_COUNTS = {"minLength": "maxLength", "minItems": "maxItems", "minProperties": "maxProperties"}
MAX_DEPTH = 8
_WHY = {"pattern": ": the complement of a pattern is not written", "format": ": the complement of a format is not written",
        "propertyNames": ": a key failing it is written only when an enum or const names it",
        "oneOf": ": 'not exactly one' is not written", "multipleOf": ": non-multiples are not written"}


def _others(types: set[str]) -> dict | bool:
    """Every value of a type outside `types` ("integer" also takes "number": non-integer numbers
    have no regex of their own, a narrowing)."""
    if "integer" in types:
        types = types | {"number"}
    rest = [t for t in ALL_TYPES if t not in types]
    return {"type": rest} if rest else False


def _type_negation(t: Any) -> dict | bool:
    return _others({t} if isinstance(t, str) else set(t))


def _family(kw: str) -> str | None:
    return next((name for name, kws in _FAMILIES if kw in kws), None)


def _within(kw: str, v: Any, n: dict, resolve: Resolve, ptr: str, depth: int, strict: bool) -> Any:
    """Instances of kw's own family that fail kw (None: not expressible)."""
    if kw in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        if isinstance(v, bool):
            return False  # a draft-4 flag: negated with its bound
        lower = kw.endswith("inimum")
        excl = kw.startswith("exclusive") or n.get("exclusive" + kw[:3].capitalize() + "imum") is True
        key = ("maximum" if excl else "exclusiveMaximum") if lower else ("minimum" if excl else "exclusiveMinimum")
        return {key: v}
    if kw in _COUNTS:
        return {_COUNTS[kw]: v - 1} if v >= 1 else False
    if kw in _COUNTS.values():
        lo = next(k for k, u in _COUNTS.items() if u == kw)
        return {lo: v + 1}
    if kw == "required" and v:
        return {FORBID: [v[0]]}  # one required key missing is enough
    if kw == "required":
        return False
    if kw == "propertyNames":
        bad = negate(v, resolve, ptr + "/propertyNames", depth + 1, strict)
        names = _names(bad)
        return {"required": [names[0]]} if names else None
    if kw == "properties":
        for key, sub in v.items():
            try:
                bad = negate(sub, resolve, f"{ptr}/properties/{key}", depth + 1, strict)
            except UnsupportedSchemaError:
                continue
            if bad is not False:
                return {"required": [key], "properties": {key: bad}}
        return None
    return None


def _names(s: Any) -> list[str]:
    """String values `s` names outright (an enum or const, possibly under anyOf): keys we can write."""
    if not isinstance(s, dict):
        return []
    if "const" in s or "enum" in s:
        return [x for x in ([s["const"]] if "const" in s else s["enum"]) if isinstance(x, str)]
    return [x for b in s.get("anyOf", []) for x in _names(b)]


def _not_in(values: list) -> list[Any]:
    """Values that differ from every one of `values`: exactly where an enum lists the candidates
    (NOT_IN filters it), else by type: other types; strings longer, numbers above, the other
    boolean (narrowings: a regex for "any string but these" is not worth its size here)."""
    out: list[Any] = [{NOT_IN: values}]
    kinds = {"null" if x is None else "boolean" if isinstance(x, bool) else "number" if isinstance(x, (int, float))
             else "string" if isinstance(x, str) else "array" if isinstance(x, list) else "object" for x in values}
    other = _others(kinds)
    if other is not False:
        out.append(other)
    strings = [x for x in values if isinstance(x, str)]
    if strings:
        out.append({"type": "string", "minLength": max(map(len, strings)) + 1})
    numbers = [x for x in values if isinstance(x, (int, float)) and not isinstance(x, bool)]
    if numbers:
        out.append({"type": "number", "exclusiveMinimum": max(numbers)})
    bools = [b for b in (True, False) if "boolean" in kinds and not any(x is b for x in values)]
    if bools:
        out.append({"enum": bools})
    return out


def negate(n: Any, resolve: Resolve, ptr: str, depth: int = 0, strict: bool = False) -> Any:
    """A schema whose instances all fail `n` (False: none can be written). strict: refuse
    instead of narrowing (the converter asks again so, to name the keyword, when the narrowed
    negation left nothing to write)."""
    if depth > MAX_DEPTH:
        raise UnsupportedSchemaError("not", ptr, "nested too deeply")
    n = merge_all([n], resolve, ptr)
    if n is False or n is True:
        return n is False
    n = {k: v for k, v in n.items() if k not in ANNOTATIONS}
    if not n:
        return False
    disjuncts: list[Any] = []
    why, inner = None, None  # the first keyword not negated, and an error from inside one
    done: set[str] = set()
    for kw, v in n.items():
        if kw in done:
            continue
        group = next((g for g in _TOGETHER if kw in g), {kw}) & n.keys()
        done |= group
        if kw == "type":
            disjuncts.append(_type_negation(v))
        elif kw == "not" and len(group) == 1:
            disjuncts.append(v)  # not-not-X is X
        elif kw == "anyOf":  # every branch fails
            try:
                disjuncts.append({"allOf": [negate(b, resolve, f"{ptr}/anyOf/{i}", depth + 1, strict)
                                            for i, b in enumerate(v)]})
            except UnsupportedSchemaError as e:
                if strict:
                    raise
                inner, why = inner or e, why or kw
        elif kw in ("enum", "const"):
            disjuncts += _not_in([v] if kw == "const" else list(v))
        elif len(group) == 1 and _family(kw) is not None:
            inside = _within(kw, v, n, resolve, ptr, depth, strict)
            if inside is None:
                why = why or kw
            elif inside is not False:
                disjuncts.append({"type": _family(kw), **inside})
        else:
            why = why or kw
    kept = [d for d in disjuncts if d is not False]
    if strict and why is not None:
        raise UnsupportedSchemaError("not", ptr, f"cannot write what fails {why!r} here{_WHY.get(why, '')}")
    if not kept:
        if why is None:
            return False
        if inner is not None:
            raise inner
        raise UnsupportedSchemaError("not", ptr, f"cannot write what fails {why!r} here{_WHY.get(why, '')}")
    return kept[0] if len(kept) == 1 else {"anyOf": kept}


def conditional(schema: dict, resolve: Resolve, ptr: str) -> dict:
    """if/then/else as a union: (if and then) or (not-if and else), the second branch only where
    not-if can be written at all (else a narrowing to the `then` side)."""
    rest = {k: v for k, v in schema.items() if k not in ("if", "then", "else")}
    cond = schema["if"]
    branches: list[Any] = [{"allOf": [rest, cond, schema.get("then", True)]}]
    try:
        branches.append({"allOf": [rest, negate(cond, resolve, ptr + "/if"), schema.get("else", True)]})
    except UnsupportedSchemaError:
        pass
    return {"anyOf": branches}
