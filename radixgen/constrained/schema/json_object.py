"""Objects for the JSON-schema converter: which members exist and what they hold.

Declared properties come in schema order (required ones always, optional ones may be skipped,
json_members.py writes the commas), then additional members: keys that match a
patternProperties pattern, or any key but the declared ones (json_keys.py) when
additionalProperties allows them. Property dependencies split the object into variants.
"""
from __future__ import annotations

import json
import re
from typing import Any

from .base import ConverterBase
from ..errors import RegexTooLarge, UnsupportedSchemaError
from .json_keys import key_not_in
from .json_members import members_body
from .json_pattern import PatternError, pattern_body, patterns_disjoint
from .json_values import STRING_CHAR, string_literal
from .schema_check import instance_ok


FORBID = "x-radixgen-forbid"  # keys a oneOf branch must not write (set by json_oneof.py)
_UNIVERSAL = re.compile(r"\^?\.[*+]\$?")  # patterns every (non-empty) key matches
MAX_MEMBERS_CHARS = 5_000_000  # an object's regex text: past this, give up early (~5 s to build)


def _esc(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def pattern_matches(pattern: str, key: str) -> bool:
    try:
        return re.search(pattern, key) is not None
    except re.error:
        return False


MAX_DEPENDENCY_SPLITS = 3  # optional dependency triggers handled by splitting (2^k variants)


DEPENDENCY_KEYWORDS = ("dependencies", "dependentRequired", "dependentSchemas")


def object_regex(conv: ConverterBase, s: dict, ptr: str) -> str | None:
    conv.object_depth += 1
    try:
        if any(s.get(kw) for kw in DEPENDENCY_KEYWORDS):
            return _with_dependencies(conv, s, ptr)
        return _object(conv, s, ptr)
    finally:
        conv.object_depth -= 1


def _with_dependencies(conv: ConverterBase, s: dict, ptr: str) -> str | None:
    """Property dependencies ("if a is present, so are b and c" / "... the object also
    satisfies S") as a union of variants that fix which optional triggers are present: absent
    ones are forbidden, present ones required with their dependencies (and their schemas merged
    in). The variants are disjoint. Past MAX_DEPENDENCY_SPLITS optional triggers, the rest are
    forbidden (a narrowing: an absent trigger owes nothing)."""
    lists: dict[str, list] = {}
    schemas: dict[str, Any] = {}
    for kw in DEPENDENCY_KEYWORDS:
        for trigger, dep in (s.get(kw) or {}).items():
            if isinstance(dep, list):
                lists[trigger] = [*lists.get(trigger, []), *dep]
            else:
                schemas[trigger] = dep if trigger not in schemas else {"allOf": [schemas[trigger], dep]}
    base = {k: v for k, v in s.items() if k not in DEPENDENCY_KEYWORDS}
    required = _closure(set(base.get("required") or []), lists)
    triggers = sorted(a for a in {*lists, *schemas} if a not in required and (lists.get(a) or a in schemas))
    dropped = triggers[MAX_DEPENDENCY_SPLITS:]
    triggers = triggers[:MAX_DEPENDENCY_SPLITS]
    variants = []
    for bits in range(1 << len(triggers)):
        present = {a for i, a in enumerate(triggers) if bits >> i & 1}
        need = _closure(required | present, lists)
        absent = set(triggers) - present | set(dropped)
        if need & absent:
            continue  # a present trigger depends on one this variant forbids
        order = list(dict.fromkeys([*(base.get("required") or []), *sorted(need)]))
        variant = {**base, "required": order, FORBID: sorted(set(base.get(FORBID, [])) | absent)}
        extra = [schemas[a] for a in sorted(schemas) if a in need]
        if extra:  # merged, the variant may hold keywords of any kind: converted in full
            variants.append(conv.value(conv.merge([variant, *extra], ptr), ptr))
        else:
            variants.append(_object(conv, variant, ptr))
    kept = list(dict.fromkeys(v for v in variants if v is not None))
    return None if not kept else kept[0] if len(kept) == 1 else "(?:" + "|".join(kept) + ")"


def _closure(keys: set[str], deps: dict) -> set[str]:
    out, todo = set(keys), list(keys)
    while todo:
        for b in deps.get(todo.pop(), []):
            if b not in out:
                out.add(b)
                todo.append(b)
    return out


def _object(conv: ConverterBase, s: dict, ptr: str) -> str | None:
    props: dict = s.get("properties") or {}
    required = list(dict.fromkeys(s.get("required") or []))
    forbidden = set(s.get(FORBID, []))
    pattern_props: dict = s.get("patternProperties") or {}
    names = _resolved(conv, s.get("propertyNames"), ptr)
    members: list[tuple[str, bool]] = []
    for key in list(props) + [r for r in required if r not in props]:
        is_req = key in required
        limit = conv.options.optional_depth
        if not is_req and limit is not None and conv.object_depth > limit:
            continue  # (a narrowing chosen to keep the automaton small)
        sub = _member_schema(s, key, pattern_props)
        ok = key not in forbidden and sub is not False and (names is None or _key_ok(conv, key, names))
        value = conv.value(sub, f"{ptr}/properties/{_esc(key)}") if ok else None
        if value is None:
            if is_req:
                return None
            continue
        members.append((f"{string_literal(key)}:{conv.ws}{value}", is_req))
    known = set(props) | set(required) | forbidden
    extra = _extra_member(conv, s, ptr, known, names)
    lo, hi = s.get("minProperties", 0), s.get("maxProperties")
    body = members_body(tuple(members), extra, "," + conv.ws, lo, hi)
    if body is not None and len(body) > MAX_MEMBERS_CHARS:
        raise RegexTooLarge(f"the object at '{ptr or '/'}' needs a regex of {len(body):,} characters")
    return None if body is None else r"\{" + body + r"\}"


def _member_schema(s: dict, key: str, pattern_props: dict) -> Any:
    """What a member named `key` must satisfy: its property schema and every matching pattern's
    schema; additionalProperties when neither applies."""
    matching = [v for p, v in pattern_props.items() if pattern_matches(p, key)]
    own = s["properties"][key] if key in (s.get("properties") or {}) else None
    if own is None and not matching:
        return s.get("additionalProperties", True)
    parts = ([own] if own is not None else []) + matching
    return parts[0] if len(parts) == 1 else {"allOf": parts}


def _resolved(conv: ConverterBase, schema: Any, ptr: str) -> Any:
    while isinstance(schema, dict) and "$ref" in schema:
        schema = conv.resolve(schema["$ref"], ptr)
    return schema


def _key_ok(conv: ConverterBase, key: str, names: Any) -> bool:
    """Whether `key` satisfies the propertyNames schema `names` (a small string validator)."""
    names = _resolved(conv, names, "")
    if isinstance(names, bool):
        return names
    if ("enum" in names and key not in names["enum"]) or ("const" in names and key != names["const"]):
        return False
    if not instance_ok(key, names):
        return False
    if not all(_key_ok(conv, key, b) for b in names.get("allOf", [])):
        return False
    if "anyOf" in names and not any(_key_ok(conv, key, b) for b in names["anyOf"]):
        return False
    if "oneOf" in names and sum(_key_ok(conv, key, b) for b in names["oneOf"]) != 1:
        return False
    return "not" not in names or not _key_ok(conv, key, names["not"])


def _names_key(conv: ConverterBase, names: Any, ptr: str) -> str | None:
    """Regex of a key (quotes included) allowed by propertyNames. Whole strings: the value
    regex of a union is an alternation of quoted strings, so its body cannot be cut out."""
    if names is True or names == {}:
        return f'"{STRING_CHAR}*"'
    if names is False:
        return None
    if "enum" in names or "const" in names:
        values = [names["const"]] if "const" in names else names["enum"]
        keys = [string_literal(v) for v in values if _key_ok(conv, v, names)]
        return "(?:" + "|".join(keys) + ")" if keys else None
    return conv.value({**names, "type": "string"}, f"{ptr}/propertyNames")


def _pattern_members(conv: ConverterBase, ptr: str, pattern_props: dict) -> str | None:
    """One member whose key matches a pattern, with that pattern's value. Several patterns
    with different schemas are fine when no key matches two of them (else the key would owe
    both schemas)."""
    patterns = list(pattern_props)
    if len({json.dumps(v, sort_keys=True) for v in pattern_props.values()}) > 1:
        overlap = [(a, b) for i, a in enumerate(patterns) for b in patterns[i + 1:]
                   if not patterns_disjoint(a, b)]
        if overlap:
            raise UnsupportedSchemaError("patternProperties", f"{ptr}/patternProperties",
                                         f"patterns {overlap[0][0]!r} and {overlap[0][1]!r} may "
                                         "match one key and have different schemas")
    alts = []
    for pattern, sub in pattern_props.items():
        key_ptr = f"{ptr}/patternProperties/{_esc(pattern)}"
        try:
            key = pattern_body(pattern)
        except PatternError as e:
            raise UnsupportedSchemaError("patternProperties", key_ptr, str(e)) from None
        value = conv.value(sub, key_ptr)
        if value is not None:
            alts.append(f'"{key}":{conv.ws}{value}')
    return None if not alts else alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"


def _names_member(conv: ConverterBase, s: dict, ptr: str, names: Any, pattern_props: dict) -> str | None:
    """patternProperties whose patterns take every key, with keys from propertyNames."""
    if not all(_UNIVERSAL.fullmatch(p) for p in pattern_props) or len(pattern_props) > 1:
        raise UnsupportedSchemaError("propertyNames", f"{ptr}/propertyNames",
                                     "propertyNames together with patternProperties")
    pattern, sub = next(iter(pattern_props.items()))
    if pattern.strip("^$") == ".+" and _key_ok(conv, "", names):
        raise UnsupportedSchemaError("propertyNames", f"{ptr}/propertyNames",
                                     "propertyNames admitting the empty key with a '.+' pattern")
    key = _names_key(conv, names, ptr)
    value = conv.value(sub, f"{ptr}/patternProperties/{_esc(pattern)}")
    return None if key is None or value is None else f'{key}:{conv.ws}{value}'


def _extra_member(conv: ConverterBase, s: dict, ptr: str, known: set[str], names: Any) -> str | None:
    """Regex for one additional member (`"key": value`), None if none may appear."""
    if ("additionalProperties" not in s and "patternProperties" not in s and "properties" in s
            and not conv.options.undeclared_keys):
        return None  # the finishing default: where extras are only allowed by omission, none
    ap = s.get("additionalProperties", True)
    pattern_props: dict = s.get("patternProperties") or {}
    if pattern_props:
        # Keys that match a pattern get its schema. Other keys (additionalProperties) are not
        # generated: a narrowing, since "does not match P" has no regex here. Nor are extra keys
        # of a pattern that also matches a declared property (that property merges the
        # pattern's schema, see _member_schema): "matches P but is not k" has no regex either,
        # and a key written twice would be ambiguous.
        pattern_props = {p: v for p, v in pattern_props.items()
                         if not any(pattern_matches(p, k) for k in known)}
        if not pattern_props:
            return None
        if names is not None and names is not True:
            return _names_member(conv, s, ptr, names, pattern_props)
        return _pattern_members(conv, ptr, pattern_props)
    if ap is False or (not conv.options.additional and s.get("properties")):
        return None  # (the second case: a narrowing chosen to keep the automaton small)
    # beside declared properties extras stay shallow (each open object pays for them); an
    # object that declares nothing is a free-form map and gets the free-form depth
    depth = conv.options.extra_depth if s.get("properties") else conv.options.any_depth - 1
    value = conv.value(ap, f"{ptr}/additionalProperties") if ap is not True else conv.any_value(depth)
    if names is not None and names is not True:
        if isinstance(names, dict) and ("enum" in names or "const" in names):
            values = [names["const"]] if "const" in names else names["enum"]
            names = {**names, "enum": [v for v in values if v not in known]}
            names.pop("const", None)
        elif any(_key_ok(conv, k, names) for k in known):
            raise UnsupportedSchemaError("propertyNames", f"{ptr}/propertyNames",
                                         "propertyNames that declared properties also satisfy")
        key = _names_key(conv, names, ptr)
    else:
        key = f'"{key_not_in(tuple(sorted(known)))}"'
    if key is None or value is None:
        return None
    return f'{key}:{conv.ws}{value}'
