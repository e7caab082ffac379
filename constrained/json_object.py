"""Objects and arrays for the JSON-schema converter.

Objects: declared properties in schema order (required ones always, optional ones may be
skipped), then additional members. Commas need "was anything written yet?", which a regex can
only track by spelling out both cases; `_members` does so with a count saturated at the bound
that matters (1 normally, min/maxProperties when given), memoised per (position, count).
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from .errors import UnsupportedSchemaError
from .json_pattern import PatternError, char_set, complement, pattern_body
from .json_values import STRING_CHAR, class_char, encode_char, repeat, string_literal
from .schema_check import instance_ok

if TYPE_CHECKING:
    from .json_schema import Converter

FORBID = "x-radixgen-forbid"  # keys a oneOf branch must not write (set by json_oneof.py)
_UNIVERSAL = re.compile(r"\^?\.[*+]\$?")  # patterns every (non-empty) key matches
MAX_MEMBERS_CHARS = 2_000_000


def _esc(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def pattern_matches(pattern: str, key: str) -> bool:
    try:
        return re.search(pattern, key) is not None
    except re.error:
        return False


def object_regex(conv: "Converter", s: dict, ptr: str) -> str | None:
    props: dict = s.get("properties") or {}
    required = list(dict.fromkeys(s.get("required") or []))
    forbidden = set(s.get(FORBID, []))
    pattern_props: dict = s.get("patternProperties") or {}
    names = _resolved(conv, s.get("propertyNames"), ptr)
    if s.get("dependencies") or s.get("dependentRequired"):
        kw = "dependencies" if "dependencies" in s else "dependentRequired"
        raise UnsupportedSchemaError(kw, f"{ptr}/{kw}", "property dependencies are not supported")
    members: list[tuple[str, bool]] = []
    for key in list(props) + [r for r in required if r not in props]:
        is_req = key in required
        sub = _member_schema(s, key, pattern_props)
        ok = key not in forbidden and sub is not False and (names is None or _key_ok(key, names))
        value = conv.value(sub, f"{ptr}/properties/{_esc(key)}") if ok else None
        if value is None:
            if is_req:
                return None
            continue
        members.append((f"{string_literal(key)}:{conv.ws}{value}", is_req))
    known = set(props) | set(required) | forbidden
    extra = _extra_member(conv, s, ptr, known, names)
    lo, hi = s.get("minProperties", 0), s.get("maxProperties")
    body = _members(tuple(members), extra, "," + conv.ws, lo, hi)
    if body is not None and len(body) > MAX_MEMBERS_CHARS:
        raise UnsupportedSchemaError("properties", ptr, f"object regex of {len(body):,} characters")
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


def _resolved(conv: "Converter", schema: Any, ptr: str) -> Any:
    while isinstance(schema, dict) and "$ref" in schema:
        schema = conv.resolve(schema["$ref"], ptr)
    return schema


def _key_ok(key: str, names: Any) -> bool:
    if isinstance(names, bool):
        return names
    if "enum" in names and key not in names["enum"]:
        return False
    return ("const" not in names or key == names["const"]) and instance_ok(key, names)


def _names_body(conv: "Converter", names: Any, ptr: str) -> str | None:
    """String-body regex for keys allowed by propertyNames."""
    if names is True or names == {}:
        return STRING_CHAR + "*"
    if names is False:
        return None
    if "enum" in names or "const" in names:
        values = [names["const"]] if "const" in names else names["enum"]
        return "(?:" + "|".join(string_literal(v)[1:-1] for v in values if _key_ok(v, names)) + ")"
    body = conv.value({**names, "type": "string"}, f"{ptr}/propertyNames")
    return None if body is None else body[1:-1]


def _extra_member(conv: "Converter", s: dict, ptr: str, known: set[str], names: Any) -> str | None:
    """Regex for one additional member (`"key": value`), None if none may appear."""
    ap = s.get("additionalProperties", True)
    pattern_props: dict = s.get("patternProperties") or {}
    if pattern_props:
        # Keys that match a pattern get its schema. Other keys (additionalProperties) are not
        # generated: a narrowing, since "does not match P" has no regex here.
        schemas = [json.dumps(v, sort_keys=True) for v in pattern_props.values()]
        if len(set(schemas)) > 1:
            raise UnsupportedSchemaError("patternProperties", f"{ptr}/patternProperties",
                         "several patterns with different schemas")
        clash = [k for k in known for p in pattern_props if pattern_matches(p, k)]
        if clash:
            raise UnsupportedSchemaError("patternProperties", f"{ptr}/patternProperties",
                         f"a pattern also matches the declared property {clash[0]!r}")
        pattern, sub = next(iter(pattern_props.items()))
        key_ptr = f"{ptr}/patternProperties/{_esc(pattern)}"
        if names is not None and names is not True:
            if not all(_UNIVERSAL.fullmatch(p) for p in pattern_props):
                raise UnsupportedSchemaError("propertyNames", f"{ptr}/propertyNames",
                             "propertyNames together with patternProperties")
            key = _names_body(conv, names, ptr)
            if key is not None and any(p.strip("^$") == ".+" for p in pattern_props) and \
                    _key_ok("", names):
                raise UnsupportedSchemaError("propertyNames", f"{ptr}/propertyNames",
                             "propertyNames admitting the empty key with a '.+' pattern")
        else:
            try:
                key = "(?:" + "|".join(pattern_body(p) for p in pattern_props) + ")"
            except PatternError as e:
                raise UnsupportedSchemaError("patternProperties", key_ptr, str(e)) from None
        value = conv.value(sub, key_ptr)
    elif ap is False:
        return None
    else:
        value = conv.value(ap, f"{ptr}/additionalProperties") if ap is not True else \
            conv.any_value(conv.any_depth - 1)
        if names is not None and names is not True:
            if isinstance(names, dict) and ("enum" in names or "const" in names):
                values = [names["const"]] if "const" in names else names["enum"]
                names = {**names, "enum": [v for v in values if v not in known]}
                names.pop("const", None)
            elif any(_key_ok(k, names) for k in known):
                raise UnsupportedSchemaError("propertyNames", f"{ptr}/propertyNames",
                             "propertyNames that declared properties also satisfy")
            key = _names_body(conv, names, ptr)
        else:
            key = key_not_in(tuple(sorted(known)))
    if key is None or value is None:
        return None
    return f'"{key}":{conv.ws}{value}'


# \u escapes of everything but printable ASCII (which json.dumps never escapes), as one unit
_U_NOT_PRINTABLE = (r"\\u(?:00[01][0-9a-fA-F]|00[89a-fA-F][0-9a-fA-F]|0[1-9a-fA-F][0-9a-fA-F]{2}"
                    r"|[1-9a-cA-C][0-9a-fA-F]{3}|[dD][0-7][0-9a-fA-F]{2}|[e-fE-F][0-9a-fA-F]{3}"
                    r"|[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2})")


def _other_char(kids: list[str]) -> str:
    """One key character that is none of `kids`, in any encoding that cannot spell one of them."""
    if all(0x20 <= ord(c) < 0x7F and c not in '"\\' for c in kids):
        excluded = "".join(class_char(c) for c in kids)
        return f'(?:[^"\\\\\\x00-\\x1f{excluded}]|\\\\["\\\\bfnrt]|{_U_NOT_PRINTABLE})'
    other = char_set(complement([(ord(c), ord(c)) for c in kids]))
    assert other is not None, "the complement of a few characters is never empty"
    return other


@lru_cache(maxsize=256)
def key_not_in(keys: tuple[str, ...]) -> str:
    """String-body regex for keys other than `keys`.

    A key either leaves the trie of `keys` at some character (then anything may follow: one
    shared tail, so the DFA does not copy the rest of the object per leaving point) or stops
    at a trie node that is not a key end. Declared characters are matched in the only form
    encode_char writes them, so a \\u-escaped spelling cannot sneak a declared key back in.
    """
    trie: dict = {}
    for k in keys:
        node = trie
        for ch in k:
            node = node.setdefault(ch, {})
        node[""] = {}

    def leave(node: dict) -> str:
        kids = [c for c in node if c]
        other = _other_char(kids)
        alts = [other] + [encode_char(c) + leave(node[c]) for c in kids]
        return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"

    def stop(node: dict) -> str | None:
        alts = [] if "" in node else [""]
        alts += [encode_char(c) + s for c in node if c for s in [stop(node[c])] if s is not None]
        if not alts:
            return None
        return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"

    tail = stop(trie)
    leaving = f"{leave(trie)}{STRING_CHAR}*"
    return leaving if tail is None else f"(?:{leaving}|{tail})"


def _members(members: tuple[tuple[str, bool], ...], extra: str | None, sep: str,
             lo: int, hi: int | None) -> str | None:
    """Body of an object: members in order (required or optional), then `extra` repeated, with
    the total count in [lo, hi]."""
    n = len(members)
    cap = hi if hi is not None else max(lo, 1)

    @lru_cache(maxsize=None)
    def rest(i: int, count: int) -> str | None:
        if i == n:
            return _extras(count)
        member, is_req = members[i]
        lead = sep if count else ""
        if hi is None and count == cap and not is_req:  # saturated: both ways continue alike
            after = rest(i + 1, count)
            return None if after is None else f"(?:{lead}{member})?{after}"
        take = None
        if hi is None or count < hi:
            after = rest(i + 1, min(count + 1, cap))
            take = None if after is None else lead + member + after
        skip = None if is_req else rest(i + 1, count)
        if take is None or skip is None:
            return take if skip is None else skip
        return f"(?:{take}|{skip})"

    def _extras(count: int) -> str | None:
        need = max(lo - count, 0)
        room = None if hi is None else hi - count
        if room is not None and room < need:
            return None
        if extra is None or room == 0:
            return "" if need == 0 else None
        if count:
            return repeat(sep + extra, need, room)
        more = repeat(sep + extra, max(need - 1, 0), None if room is None else room - 1)
        return extra + more if need else f"(?:{extra}{more})?"

    return rest(0, 0)

