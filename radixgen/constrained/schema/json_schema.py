"""JSON Schema -> regex, our own converter.

The regex is a *subset* of the schema's valid JSON texts, never a superset: a keyword that
cannot be honoured is refused with UnsupportedSchemaError (keyword + JSON pointer), never
dropped. Where a schema allows more than a regex can say, the converter narrows instead
(bounded $ref recursion, bounded nesting of free-form values, fixed property order), so every
text the grammar accepts validates.

Layout of the generated JSON: properties in schema order; a `whitespace` pattern after each
`,` and `:` and nowhere else, which accepts both compact text and json.dumps' default
(", ", ": ") and keeps a model from emitting whitespace without end.
"""
from __future__ import annotations

import json
from typing import Any, Callable

from ..automata.json_free import SLOT_REGEX
from .base import FINISHING, NO_LIMITS, ConverterBase, JsonOptions  # noqa: F401 - FINISHING, NO_LIMITS: re-exported
from ..errors import RegexTooLarge, UnsupportedSchemaError
from .json_array import array_regex
from .json_merge import ANNOTATIONS, NOT_IN, merge_all
from .json_not import conditional, negate
from .json_numbers import number_regex, number_value
from .json_object import object_regex
from .json_oneof import make_exclusive
from .json_pattern import PatternError, bounded_pattern_body, pattern_body
from .json_refs import ref_regex
from .json_values import (BOOLEAN, FORMATS, FREE_STRING, NULL, UNSUPPORTED_FORMATS, bounded_string, integer_range,
                          json_literal)
from .schema_check import check_keywords, infer_types, instance_ok, same_value

WHITESPACE = r"[ ]?"
MAX_REGEX_CHARS = 5_000_000  # regex-automata builds ~1M characters a second


def alt(parts: list[str | None]) -> str | None:
    """Alternation of the satisfiable parts; None (no JSON text) if there are none."""
    kept = list(dict.fromkeys(p for p in parts if p is not None))
    if not kept:
        return None
    return kept[0] if len(kept) == 1 else "(?:" + "|".join(kept) + ")"




class Converter(ConverterBase):
    """The dispatch by keyword; the state and the options are ConverterBase's (base.py)."""

    def __init__(self, root: Any, whitespace: str, options: JsonOptions) -> None:
        super().__init__(root, whitespace, options)
        self._any: dict[int, str] = {}

    # ---- entry and dispatch -------------------------------------------------------------

    def value(self, schema: Any, ptr: str) -> str | None:
        if schema is True:
            return self.any_value(self.any_depth)
        if schema is False:
            return None
        if not isinstance(schema, dict):
            raise UnsupportedSchemaError("schema", ptr, f"expected an object, got {schema!r:.40}")
        check_keywords(schema, ptr)
        if "not" in schema or ("if" in schema and ("then" in schema or "else" in schema)):
            return self._narrowed(schema, ptr)
        if "$ref" in schema:
            return ref_regex(self, schema, ptr)
        if "allOf" in schema:
            rest = {k: v for k, v in schema.items() if k != "allOf"}
            parts = [rest, *schema["allOf"]] if rest else list(schema["allOf"])
            return self.value(self.merge(parts, ptr + "/allOf"), ptr)
        for kw in ("anyOf", "oneOf"):
            if kw in schema:
                return self._union(schema, kw, ptr)
        if "enum" in schema or "const" in schema:
            return self._enum(schema, ptr)
        if NOT_IN in schema:
            return None  # "none of these values" is written only where an enum lists candidates
        types = infer_types(schema)
        if types is None:
            return self.any_value(self.any_depth)
        return alt([self._typed(t, schema, ptr) for t in types])

    def _typed(self, t: str, s: dict, ptr: str) -> str | None:
        if t == "string":
            return self._string(s, ptr)
        if t in ("integer", "number"):
            return self._number(t, s, ptr)
        if t == "boolean":
            return BOOLEAN
        if t == "null":
            return NULL
        if t == "object":
            return object_regex(self, s, ptr)
        if t == "array":
            return array_regex(self, s, ptr)
        raise UnsupportedSchemaError("type", ptr, f"unknown type {t!r}")

    # ---- references and combinators ----------------------------------------------------

    def resolve(self, ref: str, ptr: str) -> Any:
        if not ref.startswith("#"):
            raise UnsupportedSchemaError("$ref", ptr, f"only local references (#/...), got {ref!r}")
        node = self.root
        for part in ref[1:].split("/")[1:] if ref != "#" else []:
            part = part.replace("~1", "/").replace("~0", "~")
            try:
                node = node[int(part)] if isinstance(node, list) else node[part]
            except (KeyError, IndexError, ValueError, TypeError):
                raise UnsupportedSchemaError("$ref", ptr, f"cannot resolve {ref!r}") from None
        return node

    def _resolver(self, ptr: str) -> Callable[[str], Any]:
        return lambda ref: self.resolve(ref, ptr)

    def merge(self, parts: list[Any], ptr: str) -> Any:
        return merge_all(parts, lambda ref: self.resolve(ref, ptr), ptr)

    def _narrowed(self, schema: dict, ptr: str) -> str | None:
        """`not` and if/then/else, narrowed soundly (json_not.py). Where the narrowing leaves
        nothing, the keyword that could not be negated is named instead of "no value"."""
        resolve = self._resolver(ptr)
        if "not" in schema:
            negated, where = schema["not"], ptr + "/not"
            rest = {k: v for k, v in schema.items() if k != "not"}
            rx = self.value(self.merge([rest, negate(negated, resolve, where)], ptr), ptr)
        else:
            negated, where = schema["if"], ptr + "/if"
            rx = self.value(conditional(schema, resolve, ptr), ptr)
        if rx is None:
            negate(negated, resolve, where, strict=True)  # raises if the negation was narrowed
        return rx

    def _union(self, schema: dict, kw: str, ptr: str) -> str | None:
        rest = {k: v for k, v in schema.items() if k != kw and k not in ANNOTATIONS}
        branches = [self._branch(rest, b, f"{ptr}/{kw}/{i}") for i, b in enumerate(schema[kw])]
        if kw == "oneOf":
            branches = make_exclusive(branches, lambda ref: self.resolve(ref, ptr), ptr)
        return alt([self.value(b, f"{ptr}/{kw}/{i}") for i, b in enumerate(branches)])

    def _branch(self, rest: dict, branch: Any, ptr: str) -> Any:
        """A union's branch with the union's other keywords. A $ref branch keeps its $ref (the
        keywords become its siblings): merging would inline it past json_refs.py's recursion
        bound, and a branch that refers back to its union would then never end."""
        if not rest:
            return branch
        if isinstance(branch, dict) and "$ref" in branch and not rest.keys() & branch.keys():
            return {**rest, **branch}
        return self.merge([rest, branch], ptr)

    def _enum(self, s: dict, ptr: str) -> str | None:
        values = [s["const"]] if "const" in s else s["enum"]
        if not isinstance(values, list):
            raise UnsupportedSchemaError("enum", ptr, "enum must be a list")
        kept = [v for v in values if instance_ok(v, s) and not any(same_value(v, x) for x in s.get(NOT_IN, []))]
        return alt([json_literal(v, self.ws) for v in kept])

    # ---- scalars -------------------------------------------------------------------------

    def _string(self, s: dict, ptr: str) -> str | None:
        fmt, pattern = s.get("format"), s.get("pattern")
        lo, hi = s.get("minLength", 0), s.get("maxLength")
        has_len = lo > 0 or hi is not None
        if fmt in UNSUPPORTED_FORMATS:
            raise UnsupportedSchemaError("format", ptr + "/format", f"format {fmt!r}")
        if fmt in FORMATS:
            if has_len or pattern is not None:
                raise UnsupportedSchemaError("format", ptr + "/format",
                                             "format combined with pattern/minLength/maxLength")
            return '"' + FORMATS[fmt] + '"'
        if pattern is not None:
            try:
                body = bounded_pattern_body(pattern, lo, hi) if has_len else pattern_body(pattern)
            except PatternError as e:
                raise UnsupportedSchemaError("pattern", ptr + "/pattern", str(e)) from None
            return None if body is None else '"' + body + '"'
        cap = self.options.string_cap
        if not has_len and cap is None:
            return FREE_STRING  # nothing counted: the lean form is exact enough
        if hi is None and cap is not None:
            hi = max(lo, cap)
        return bounded_string(lo, hi, self.options.length_cap, self.options.exact_until)

    def _number(self, t: str, s: dict, ptr: str) -> str | None:
        return number_value(self.options.number_limits, t, s, ptr)

    # ---- free-form values ----------------------------------------------------------------

    def any_value(self, depth: int) -> str:
        """Any JSON value nested at most `depth` containers deep (a narrowing of `{}`)."""
        if self.options.slots:
            return SLOT_REGEX
        if depth not in self._any:
            number = number_regex(*self.options.number_limits)
            scalar = f"(?:{FREE_STRING}|{number}|{BOOLEAN}|{NULL})"
            if depth <= 0:
                self._any[depth] = f"(?:{scalar}|\\[\\]|\\{{\\}})"
            else:
                inner, sep = self.any_value(depth - 1), "," + self.ws
                member = f"{FREE_STRING}:{self.ws}{inner}"
                # (x sep)* x keeps one DFA copy of x per level (see json_object._members_by_last)
                self._any[depth] = (f"(?:{scalar}|\\[(?:(?:{inner}{sep})*{inner})?\\]"
                                    f"|\\{{(?:(?:{member}{sep})*{member})?\\}})")
        return self._any[depth]


def json_schema_parts(schema: dict | str | bool, whitespace: str = WHITESPACE,
                      options: JsonOptions = JsonOptions()) -> tuple[str, dict[int, str | None]]:
    """(regex, calls): the regex (whole-text match) for JSON texts valid under `schema`, and with
    options.calls the regex of each CALL byte it or another call uses (None: that $ref admits no
    value). `whitespace` goes after every `,` and `:`; `options` bound the narrowings.
    Raises UnsupportedSchemaError for features that cannot be honoured, ValueError when no JSON
    text is valid, RegexTooLarge past MAX_REGEX_CHARS in all.
    """
    if isinstance(schema, str):
        schema = json.loads(schema)
    conv = Converter(schema, whitespace, options)
    regex = conv.value(schema, "")
    if regex is None:
        raise ValueError("the schema admits no JSON value (within the recursion bound)")
    size = len(regex) + sum(len(r or "") for r in conv.calls.values())
    if size > MAX_REGEX_CHARS:
        raise RegexTooLarge(f"the schema needs a regex of {size:,} characters")
    return regex, conv.calls


def json_schema_to_regex(schema: dict | str | bool, whitespace: str = WHITESPACE,
                         options: JsonOptions = JsonOptions()) -> str:
    """The regex alone (see json_schema_parts); options.calls is not for this one."""
    if options.calls:
        raise ValueError("options.calls needs json_schema_parts (the called regexes)")
    return json_schema_parts(schema, whitespace, options)[0]


__all__ = ["UnsupportedSchemaError", "json_schema_to_regex", "json_schema_parts", "WHITESPACE", "JsonOptions",
           "NO_LIMITS", "Converter", "alt"]
