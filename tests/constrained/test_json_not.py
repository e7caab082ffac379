"""Issue 19, `not`, if/then/else, allOf and dependencies: every text the regex takes validates
(jsonschema over a pool of values), and the narrowings keep what they promise."""
from __future__ import annotations

import itertools
import json
import re

import jsonschema
import pytest

from radixgen.constrained import UnsupportedSchemaError, json_schema_to_regex
from radixgen.constrained.schema.json_schema import NO_LIMITS

POOL = [None, True, False, 0, 1, 7, -3, 2.5, "", "a", "b", "bb", "ccc", "x@y.io", [], [1], [1, 2, 3],
        {}, {"a": 1}, {"b": "x"}, {"a": 1, "b": "x"}, {"a": "s"}, {"kind": "x"}, {"kind": "x", "n": 1},
        {"kind": "y"}, {"kind": "y", "n": 2}, {"1": [1, 2], "2": [3, 4]}, {"1": [1, 2]}]


def taken(schema) -> list:
    """The pool values the schema's regex takes, with the finishing defaults off (whole languages)."""
    rx = re.compile(json_schema_to_regex(schema, options=NO_LIMITS))
    return [v for v in POOL if rx.fullmatch(json.dumps(v, separators=(",", ":")))]


def sound(schema) -> list:
    out = taken(schema)
    check = jsonschema.validators.validator_for(schema)(schema)
    assert all(check.is_valid(v) for v in out), [v for v in out if not check.is_valid(v)]
    return out


@pytest.mark.parametrize("schema,expected", [
    ({"not": {"type": "string"}}, [None, True, 2.5, [1], {"a": 1}]),
    ({"type": "integer", "not": {"minimum": 5}}, [0, 1, -3]),
    ({"type": "string", "not": {"enum": ["a", "bb"]}}, ["ccc"]),
    ({"enum": ["a", "b", "ccc"], "not": {"const": "b"}}, ["a", "ccc"]),
    ({"type": "object", "properties": {"a": {"type": "integer"}}, "not": {"required": ["a"]}}, [{}, {"b": "x"}]),
    ({"type": "object", "not": {"properties": {"a": {"type": "integer"}}}}, [{"a": "s"}]),
    ({"type": "string", "not": {"anyOf": [{"maxLength": 1}, {"minLength": 3}]}}, ["bb"]),
    ({"allOf": [{"not": {"type": "null"}}, {"not": {"type": "boolean"}}], "type": ["null", "boolean", "integer"]},
     [0, 1]),
])
def test_not_is_narrowed_soundly(schema, expected):
    out = sound(schema)
    assert all(v in out for v in expected), (expected, out)


def test_not_property_names_requires_a_named_key():
    """The dev set's 120: not(propertyNames not enum) = some key in the enum: written as required."""
    schema = {"type": "object", "patternProperties": {"^[0-9]$": {"type": "array", "minItems": 2}},
              "additionalProperties": False, "maxProperties": 2,
              "not": {"anyOf": [{"propertyNames": {"not": {"enum": ["1", "3"]}}},
                                {"propertyNames": {"not": {"enum": ["2", "3"]}}}]}}
    assert sound(schema) == [{"1": [1, 2], "2": [3, 4]}]


def test_what_cannot_be_negated_is_refused_by_name():
    with pytest.raises(UnsupportedSchemaError, match="'pattern'") as info:
        json_schema_to_regex({"type": "string", "not": {"pattern": "^a"}})
    assert info.value.keyword == "not" and info.value.pointer == "/not"
    # a keyword holds for the types it does not constrain: integers never fail a pattern
    with pytest.raises(UnsupportedSchemaError, match="'pattern'"):
        json_schema_to_regex({"type": ["string", "integer"], "not": {"pattern": "^a"}})


def test_if_then_else():
    schema = {"type": "object", "properties": {"kind": {"enum": ["x", "y"]}, "n": {"type": "integer"}},
              "required": ["kind"], "if": {"properties": {"kind": {"const": "x"}}},
              "then": {"required": ["n"]}, "else": {"not": {"required": ["n"]}}}
    assert sound(schema) == [{"kind": "x", "n": 1}, {"kind": "y"}]
    # an `if` we cannot negate keeps the `then` side only
    narrowed = {"type": "string", "if": {"pattern": "^b"}, "then": {"format": "email"}, "else": {"maxLength": 1}}
    assert sound({**narrowed, "then": {"enum": ["bb", "ccc", "a"]}}) == ["bb"]


def test_all_of_with_different_types_intersects():
    assert sound({"allOf": [{"type": ["integer", "string"]}, {"type": ["number", "null"]}]}) == [0, 1, 7, -3]
    assert sound({"allOf": [{"type": "number", "minimum": 0.5}, {"maximum": 5}, {"type": "integer"}]}) == [1]


def test_dependent_schemas_and_many_triggers():
    props = {k: {"type": "integer"} for k in "abcdef"}
    schema = {"type": "object", "properties": props, "additionalProperties": False,
              "dependentRequired": {"a": ["b"], "c": ["d"], "e": ["f"], "f": ["a"]},
              "dependentSchemas": {"b": {"properties": {"c": {"maximum": 3}}}}}
    rx = re.compile(json_schema_to_regex(schema))
    check = jsonschema.Draft202012Validator(schema)
    seen = 0
    for bits, val in itertools.product(range(64), (1, 5)):
        value = {k: val for i, k in enumerate("abcdef") if bits >> i & 1}
        if rx.fullmatch(json.dumps(value, separators=(",", ":"))):
            assert check.is_valid(value), value
            seen += 1
    assert seen >= 10  # the three split triggers still vary; the fourth is left out
