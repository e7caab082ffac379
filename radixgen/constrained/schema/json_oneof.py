"""oneOf: an instance must match exactly one branch. A regex can only say "one of", so every
text generated from branch i must be shown to fail every other branch j, or the schema is
refused. Shown by (first that applies, for each ordered pair):

1. types: what i generates and what j accepts share no JSON type;
2. values: both are enum/const with no common value, or both have string patterns no string
   matches together (checked on interegular automata);
3. a discriminator: a key i always writes with values (or a JSON type) j's property of that
   name forbids;
4. a key j requires that i never writes (i is closed without it) ...
5. ... or that i can be made never to write: the key is added to i's forbidden keys (a
   narrowing of i: its optional property or additional member of that name is dropped).
A branch j that is itself an anyOf/oneOf is checked alternative by alternative: text that
fails each of them fails j.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import UnsupportedSchemaError
from .json_merge import merge_all
from .json_object import FORBID
from .json_pattern import patterns_disjoint
from .schema_check import ALL_TYPES, infer_types

Resolve = Callable[[str], Any]


@dataclass
class _Info:
    generates: set[str]        # JSON types our regex for the branch can write
    accepts: set[str]          # JSON types the branch's schema can accept
    values: list | None        # enum/const values, None if not an enum
    required: set[str] = field(default_factory=set)
    closed: set[str] | None = None  # allowed keys when additionalProperties is false
    tags: dict[str, list] = field(default_factory=dict)  # required key -> its enum values
    pattern: str | None = None  # a string branch's pattern
    values_of: dict[str, list] = field(default_factory=dict)  # declared key -> its enum values
    declared: set[str] = field(default_factory=set)
    extra_values: list | None = None  # enum values additional members must take
    kinds: dict[str, tuple[set[str], set[str]]] = field(default_factory=dict)  # declared key ->
    # (types its value is written as, types its schema accepts)


def _value_types(values: list) -> set[str]:
    out = set()
    for v in values:
        out.add("null" if v is None else "boolean" if isinstance(v, bool) else
                "number" if isinstance(v, (int, float)) else "string" if isinstance(v, str) else
                "array" if isinstance(v, list) else "object")
    return out


def _info(branch: Any, resolve: Resolve, ptr: str, depth: int = 0, shallow: bool = False) -> _Info:
    s = merge_all([branch], resolve, ptr)
    if s is False:
        return _Info(set(), set(), [])
    if "anyOf" in s or "oneOf" in s:
        rest = {k: v for k, v in s.items() if k not in ("anyOf", "oneOf")}
        if depth >= 4:  # deep nesting: only say "could be anything"
            return _Info(set(ALL_TYPES), set(ALL_TYPES), None)
        subs = [_info({"allOf": [rest, b]}, resolve, ptr, depth + 1)
                for b in s.get("anyOf", []) + s.get("oneOf", [])]
        return _combine(subs)
    values = [s["const"]] if "const" in s else s.get("enum")
    declared = infer_types(s)
    gen = set(declared) if declared is not None else set(ALL_TYPES)
    accepts = set(ALL_TYPES) if "type" not in s or declared is None else set(declared)
    if values is not None:
        gen &= _value_types(values) | ({"integer"} if "number" in _value_types(values) else set())
    info = _Info(gen, accepts, values, pattern=s.get("pattern") if isinstance(s.get("pattern"), str) else None)
    if gen <= {"object"}:
        info.required = set(s.get("required", []))
        props = s.get("properties") or {}
        if s.get("additionalProperties", True) is False and not s.get("patternProperties"):
            info.closed = set(props) - set(s.get(FORBID, []))
        for key, sub in props.items():
            if not shallow:  # one level down only: a member's own members never decide here
                member = _info(sub, resolve, ptr, depth + 1, shallow=True)
                info.kinds[key] = (member.generates, member.accepts)
            sub = merge_all([sub], resolve, ptr)
            if isinstance(sub, dict) and ("enum" in sub or "const" in sub):
                info.values_of[key] = [sub["const"]] if "const" in sub else sub["enum"]
        extra = s.get("additionalProperties", True)
        if isinstance(extra, dict) and not s.get("patternProperties") and ("enum" in extra or "const" in extra):
            info.extra_values = [extra["const"]] if "const" in extra else extra["enum"]
        info.declared = set(props)
        info.tags = {k: info.values_of[k] for k in info.required if k in info.values_of}
    return info


def _combine(subs: list[_Info]) -> _Info:
    """What holds for every branch of a nested anyOf/oneOf."""
    out = _Info(set().union(*(i.generates for i in subs)), set().union(*(i.accepts for i in subs)),
                None if any(i.values is None for i in subs) else [v for i in subs for v in i.values])
    if subs and all(i.generates <= {"object"} for i in subs):
        out.required = set.intersection(*(i.required for i in subs))
        out.tags = {k: [v for i in subs for v in i.tags[k]] for k in out.required
                    if all(k in i.tags for i in subs)}
    return out


def _constraint(j: _Info, key: str) -> list | None:
    """The enum a member `key` must take under j, None if unconstrained (or unknown)."""
    if key in j.declared:
        return j.values_of.get(key)
    return j.extra_values


def _canon(values: list) -> set[str]:
    return {json.dumps(v, sort_keys=True) for v in values}


def _types_meet(a: set[str], b: set[str]) -> bool:
    widen = lambda t: t | ({"number"} if "integer" in t else set()) | ({"integer"} if "number" in t else set())
    return bool(widen(a) & widen(b))


def _excluded(i: _Info, j: _Info, forbidden: set[str]) -> bool:
    """Whether no text generated from i validates against j (rules 1-4)."""
    if not _types_meet(i.generates, j.accepts):
        return True
    if i.values is not None and j.values is not None and not _canon(i.values) & _canon(j.values):
        return True
    if i.generates <= {"string"} and i.pattern and j.pattern and patterns_disjoint(i.pattern, j.pattern):
        return True  # j's pattern rejects every string i writes
    if i.generates <= {"object"} and j.generates <= {"object"}:  # j's object rules bind i's text
        for key, values in i.tags.items():  # i always writes key with one of values
            allowed = _constraint(j, key)
            if allowed is not None and not _canon(values) & _canon(allowed):
                return True
        for key in i.required & j.declared & i.kinds.keys() & j.kinds.keys():
            if not _types_meet(i.kinds[key][0], j.kinds[key][1]):
                return True  # i always writes key as a type j's property of that name refuses
        missing = j.required - i.required  # keys j needs that i may leave out
        if missing & forbidden or (i.closed is not None and missing - i.closed):
            return True
        if j.closed is not None and i.required - j.closed:
            return True
    return False


def _alternatives(branch: Any, resolve: Resolve, ptr: str) -> list[_Info]:
    """A branch as the alternatives of its own anyOf/oneOf, if it is one (text fails the branch
    if it fails each of them), else as itself."""
    s = merge_all([branch], resolve, ptr)
    if not isinstance(s, dict) or not ("anyOf" in s or "oneOf" in s):
        return [_info(branch, resolve, ptr)]
    rest = {k: v for k, v in s.items() if k not in ("anyOf", "oneOf")}
    return [_info({"allOf": [rest, b]}, resolve, ptr, 1) for b in s.get("anyOf", []) + s.get("oneOf", [])]


def make_exclusive(branches: list[Any], resolve: Resolve, ptr: str) -> list[Any]:
    """The branches, narrowed where needed so that no generated text matches two of them."""
    infos = [_info(b, resolve, f"{ptr}/oneOf/{n}") for n, b in enumerate(branches)]
    alternatives = [_alternatives(b, resolve, f"{ptr}/oneOf/{n}") for n, b in enumerate(branches)]
    forbid: list[set[str]] = [set() for _ in branches]
    for a, ia in enumerate(infos):
        for b, ib in [(b, ib) for b, alts in enumerate(alternatives) if b != a for ib in alts]:
            if _excluded(ia, ib, forbid[a]):
                continue
            key = next((k for k in sorted(ib.required - ia.required)), None)
            if key is None or not ia.generates <= {"object"} or not ib.generates <= {"object"}:
                raise UnsupportedSchemaError("oneOf", f"{ptr}/oneOf", f"branches {a} and {b} may "
                                             "both match, and exclusivity is not expressible")
            forbid[a].add(key)
    out = []
    for branch, keys in zip(branches, forbid):
        if keys:
            branch = {"allOf": [branch, {FORBID: sorted(keys)}]} if isinstance(branch, dict) else branch
        out.append(branch)
    return out
