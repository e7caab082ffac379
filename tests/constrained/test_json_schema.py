"""json_schema_to_regex: what it accepts and refuses, checked with Python's re (no index)."""
from __future__ import annotations

import json
import re

import jsonschema
import pytest

from radixgen.constrained import UnsupportedSchemaError, json_schema_to_regex
from radixgen.constrained.schema.json_schema import JsonOptions


def accepts(schema, value, **dumps) -> bool:
    return re.fullmatch(json_schema_to_regex(schema), json.dumps(value, **dumps)) is not None


def both_forms(schema, value) -> bool:
    """Accepted compact (raw UTF-8) and with json.dumps defaults (", ", ": ", ASCII escapes)."""
    return accepts(schema, value, separators=(",", ":"), ensure_ascii=False) and accepts(schema, value)


PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 20},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "email": {"type": "string", "format": "email"},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        "role": {"enum": ["admin", "user", None]},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("value", [
    {"name": "Ann", "age": 30},
    {"name": "Zoë \"Z\" 😀", "age": 0, "email": "z.o@mail.example.com"},
    {"name": "B", "age": 150, "tags": [], "role": None},
    {"name": "Bob", "age": 7, "tags": ["a", "b", "c"], "role": "admin"},
    {"name": "Bob", "age": 7, "role": "user"},
])
def test_person_valid(value):
    jsonschema.validate(value, PERSON)
    assert both_forms(PERSON, value)


@pytest.mark.parametrize("value", [
    {"age": 30},                                   # required missing
    {"name": "", "age": 30},                       # minLength
    {"name": "x" * 21, "age": 30},                 # maxLength
    {"name": "Ann", "age": 151},                   # maximum
    {"name": "Ann", "age": -1},                    # minimum
    {"name": "Ann", "age": 3.5},                   # integer
    {"name": "Ann", "age": 3, "tags": ["a"] * 4},  # maxItems
    {"name": "Ann", "age": 3, "role": "root"},     # enum
    {"name": "Ann", "age": 3, "email": "nope"},    # format
    {"name": "Ann", "age": 3, "x": 1},             # additionalProperties
])
def test_person_invalid(value):
    assert not both_forms(PERSON, value) and not accepts(PERSON, value)


def test_whitespace_is_bounded():
    assert accepts(PERSON, {"name": "A", "age": 1})                       # ": " and ", "
    assert re.fullmatch(json_schema_to_regex(PERSON), '{"name":"A","age":1}')
    assert not re.fullmatch(json_schema_to_regex(PERSON), '{"name":  "A","age":1}')
    assert not re.fullmatch(json_schema_to_regex(PERSON), '{ "name":"A","age":1}')


def test_optional_properties_any_subset_in_order():
    schema = {"type": "object", "properties": {k: {"type": "integer"} for k in "abcd"},
              "additionalProperties": False}
    rx = re.compile(json_schema_to_regex(schema))
    for mask in range(16):
        value = {k: i for i, k in enumerate("abcd") if mask >> i & 1}
        assert rx.fullmatch(json.dumps(value))
    assert not rx.fullmatch('{"b":1,"a":0}')  # schema order
    assert not rx.fullmatch('{"a":1,}') and not rx.fullmatch('{,"a":1}')


def test_additional_properties_open_when_allowed_but_never_duplicate_keys():
    # explicitly open (absent, it is closed by the finishing default: test_json_numbers.py)
    schema = {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"],
              "additionalProperties": True}
    assert accepts(schema, {"id": 1, "note": "x", "more": [1, {"a": None}]})
    assert accepts(schema, {"id": 1, "ids": 2, "i": 3, "": 4})
    assert not re.fullmatch(json_schema_to_regex(schema), '{"id":1,"id":"x"}')
    assert not re.fullmatch(json_schema_to_regex(schema), '{"id":1,"\\u0069d":"x"}')
    typed = {**schema, "additionalProperties": {"type": "boolean"}}  # replaces True
    assert accepts(typed, {"id": 1, "flag": True}) and not accepts(typed, {"id": 1, "flag": 1})


def test_refs_and_bounded_recursion():
    tree = {"$defs": {"node": {"type": "object", "properties": {
        "v": {"type": "integer"}, "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
        "required": ["v"], "additionalProperties": False}}, "$ref": "#/$defs/node"}
    rx = json_schema_to_regex(tree, options=JsonOptions(max_recursion=3))
    assert re.fullmatch(rx, json.dumps({"v": 1, "kids": [{"v": 2, "kids": [{"v": 3}]}]}))
    too_deep = {"v": 1, "kids": [{"v": 2, "kids": [{"v": 3, "kids": [{"v": 4}]}]}]}
    assert not re.fullmatch(rx, json.dumps(too_deep))  # a narrowing: never invalid


def test_combinators():
    schema = {"anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 2}]}
    assert accepts(schema, 5) and accepts(schema, "ab") and not accepts(schema, "abc")
    one = {"oneOf": [{"type": "object", "properties": {"kind": {"const": "a"}, "x": {"type": "integer"}},
                      "required": ["kind"]},
                     {"type": "object", "properties": {"kind": {"const": "b"}}, "required": ["kind"]}]}
    assert accepts(one, {"kind": "a", "x": 1}) and accepts(one, {"kind": "b"})
    assert not accepts(one, {"kind": "c"})
    every = {"allOf": [{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
                       {"properties": {"b": {"type": "string"}}, "required": ["b"]}]}
    assert accepts(every, {"a": 1, "b": "x"}) and not accepts(every, {"a": 1})


def test_one_of_overlap_is_narrowed_or_refused():
    # required-only branches: the first never writes "flow", the second never "run"
    schema = {"type": "object", "oneOf": [{"required": ["run"]}, {"required": ["flow"]}],
              "properties": {"run": {"type": "string"}, "flow": {"type": "string"}}}
    rx = json_schema_to_regex(schema)
    assert re.fullmatch(rx, '{"run":"a"}') and re.fullmatch(rx, '{"flow":"a"}')
    assert not re.fullmatch(rx, '{"run":"a","flow":"b"}')
    with pytest.raises(UnsupportedSchemaError, match="oneOf"):
        json_schema_to_regex({"oneOf": [{"type": "number"}, {"type": "integer"}]})


def test_arrays():
    schema = {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}],
              "items": {"type": "boolean"}, "minItems": 1, "maxItems": 4}
    for ok in ([1], [1, "a"], [1, "a", True, False]):
        assert both_forms(schema, ok)
    for bad in ([], ["a"], [1, "a", True, False, True], [1, 2]):
        assert not accepts(schema, bad)
    assert accepts({"type": "array", "uniqueItems": True}, [[1, 2]])  # one item is unique
    assert not accepts({"type": "array", "uniqueItems": True}, [1, 2])


@pytest.mark.parametrize("fmt,good,bad", [
    ("date", ["2024-02-29", "1999-12-31"], ["2023-02-29", "2024-13-01", "2024-1-01"]),
    ("date-time", ["2024-01-02T03:04:05Z", "2024-01-02T03:04:05.123+02:00"], ["2024-01-02 03:04"]),
    ("time", ["23:59:59Z", "00:00:00-05:30"], ["24:00:00Z", "12:00"]),
    ("uuid", ["123e4567-e89b-12d3-a456-426614174000"], ["123e4567e89b12d3a456426614174000"]),
    ("ipv4", ["192.168.0.1", "0.0.0.0"], ["256.1.1.1", "1.2.3"]),
    ("ipv6", ["::1", "2001:db8::8a2e:370:7334"], ["2001:db8:::1", "12345::"]),
    ("email", ["a.b@c.io"], ["a@b", "@b.io"]),
    ("uri", ["https://example.com/a?b=c#d", "urn:isbn:123"], ["no scheme", "http://a b"]),
    ("hostname", ["example.com", "a-b.c"], ["-a.com", "a..b"]),
])
def test_formats(fmt, good, bad):
    schema = {"type": "string", "format": fmt}
    for text in good:
        assert accepts(schema, text), text
    for text in bad:
        assert not accepts(schema, text), text


def test_numbers():
    schema = {"type": "number", "minimum": -2, "exclusiveMaximum": 10}
    for ok in (-2, -1.5, 0, 9.99, 3):
        assert accepts(schema, ok)
    for bad in (-2.01, 10, 10.0, 11):
        assert not accepts(schema, bad)
    assert accepts({"type": "integer", "exclusiveMinimum": 0}, 1)
    assert not accepts({"type": "integer", "exclusiveMinimum": 0}, 0)


def test_pattern_search_semantics_and_escapes():
    schema = {"type": "string", "pattern": "^[a-z]+-[0-9]{2}$"}
    assert accepts(schema, "ab-12") and not accepts(schema, "ab-123") and not accepts(schema, "Ab-12")
    assert accepts({"type": "string", "pattern": "é"}, "café au lait")
    assert accepts({"type": "string", "pattern": '"'}, 'say "hi"')


def test_const_enum_and_types():
    assert accepts({"const": {"a": [1, "x"]}}, {"a": [1, "x"]})
    assert accepts({"enum": [1.0, "x"]}, 1)  # 1 == 1.0 in JSON
    assert accepts({"type": ["string", "null"]}, None) and not accepts({"type": ["string", "null"]}, 1)
    assert accepts({}, {"anything": [1, {"nested": True}]})
    assert accepts(True, "x")


@pytest.mark.parametrize("schema,keyword,pointer", [
    ({"type": "object", "properties": {"a": {"type": "string", "not": {"format": "email"}}}}, "not",
     "/properties/a/not"),
    ({"type": "array", "items": {"type": "integer"}, "contains": {"const": 1}}, "contains", "/contains"),
    ({"type": "number", "multipleOf": 0.01}, "multipleOf", "/multipleOf"),
    ({"type": "string", "format": "duration"}, "format", "/format"),
    ({"type": "string", "pattern": "(?<=a)b"}, "pattern", "/pattern"),
    ({"$defs": {"x": {"type": "string", "if": {"pattern": "^a"}, "then": False}}, "$ref": "#/$defs/x"},
     "not", "/$defs/x/if"),
    ({"type": "array", "unevaluatedItems": False}, "unevaluatedItems", "/unevaluatedItems"),
    ({"$ref": "https://example.com/schema.json"}, "$ref", "/"),
])
def test_refusals_name_keyword_and_pointer(schema, keyword, pointer):
    with pytest.raises(UnsupportedSchemaError) as info:
        json_schema_to_regex(schema)
    assert info.value.keyword == keyword and info.value.pointer == pointer
    assert keyword in str(info.value) and pointer in str(info.value)
    assert isinstance(info.value, ValueError)


def test_schema_as_json_string():
    assert json_schema_to_regex(json.dumps(PERSON)) == json_schema_to_regex(PERSON)


def test_property_dependencies_split_into_variants():
    schema = {"type": "object", "properties": {k: {"type": "integer"} for k in "abcd"},
              "dependencies": {"a": ["c"], "d": ["b"]}, "additionalProperties": False}
    rx = re.compile(json_schema_to_regex(schema))
    for mask in range(16):
        value = {k: 1 for i, k in enumerate("abcd") if mask >> i & 1}
        ok = jsonschema.Draft7Validator(schema).is_valid(value)
        assert bool(rx.fullmatch(json.dumps(value))) == ok, value
    schema = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
              "dependencies": {"a": {"required": ["b"]}}}  # a schema dependency: merged when a is there
    rx = re.compile(json_schema_to_regex(schema))
    for value in ({}, {"a": 1}, {"b": 1}, {"a": 1, "b": 2}):
        ok = jsonschema.Draft7Validator(schema).is_valid(value)
        assert bool(rx.fullmatch(json.dumps(value))) == ok, value


def test_pattern_with_length_when_expressible():
    schema = {"type": "string", "pattern": r"^[\w.\- ]+$", "minLength": 3, "maxLength": 6}
    assert accepts(schema, "ab.c") and not accepts(schema, "ab") and not accepts(schema, "abcdefg")
    with pytest.raises(UnsupportedSchemaError, match="pattern"):
        json_schema_to_regex({"type": "string", "pattern": "^a+b$", "maxLength": 4})


def test_pattern_properties():
    schema = {"type": "object", "additionalProperties": False, "patternProperties": {
        "^[a-z]+$": {"type": "integer"}, "^[a-z]+/[a-z]+$": {"type": "string"}}}
    assert accepts(schema, {"ab": 1, "a/b": "x"}) and not accepts(schema, {"ab": "x"})
    assert not accepts(schema, {"A": 1})
    overlapping = {"type": "object", "patternProperties": {"^a": {"type": "integer"},
                                                           "b$": {"type": "string"}}}
    with pytest.raises(UnsupportedSchemaError, match="patternProperties"):
        json_schema_to_regex(overlapping)


def test_pattern_that_matches_a_declared_property():
    """The declared property takes both schemas; extras of that pattern are not written (a
    narrowing: "matches P but is not k" has no regex), other patterns' extras are."""
    schema = {"type": "object", "properties": {"run": {"type": "string"}},
              "patternProperties": {"^r": {"maxLength": 3}, "^x-": {"type": "integer"}}}
    assert both_forms(schema, {"run": "abc", "x-a": 1})
    assert not accepts(schema, {"run": "abcd"})  # ^r's maxLength binds run too
    assert not accepts(schema, {"run": "a", "rx": "b"})  # an extra of the clashing pattern
    assert not accepts(schema, {"run": "a", "x-a": "b"})


def test_one_of_branch_that_is_a_union_and_type_discriminators():
    """A branch that is itself a oneOf is excluded alternative by alternative; branches that
    require the same key are told apart by the JSON type of its value."""
    executor = {"oneOf": [
        {"type": "object", "required": ["docker"], "properties": {"docker": {"type": "array"}}},
        {"type": "object", "required": ["machine"], "properties": {"machine": {"type": "object"}}},
        {"type": "object", "required": ["machine"], "properties": {"machine": {"type": "boolean"}}}]}
    schema = {"type": "object", "oneOf": [executor, {"type": "object", "required": ["executor"],
                                                      "properties": {"executor": {"type": "string"}}}]}
    good = [{"docker": []}, {"machine": {}}, {"machine": True}, {"executor": "e"}]
    bad = [{"docker": [], "executor": "e"}, {"machine": True, "executor": "e"}, {"machine": 1}]
    for value in good:
        assert both_forms(schema, value), value
        jsonschema.validate(value, schema)
    for value in bad:
        assert not accepts(schema, value), value


def test_one_of_disjoint_string_patterns_and_property_names():
    ids = {"oneOf": [{"type": "string", "pattern": "^[0-9]+-x$"}, {"type": "string", "pattern": "^w-"}]}
    assert accepts(ids, "12-x") and accepts(ids, "w-12") and not accepts(ids, "12")
    names = {"type": "object", "propertyNames": {"pattern": "^[a-z]{2}$"},
             "additionalProperties": {"type": "integer"}}
    assert accepts(names, {"ab": 1, "cd": 2}) and not accepts(names, {"abc": 1})


@pytest.mark.parametrize("extra", [{"additionalProperties": {"type": "integer"}},
                                   {"patternProperties": {".+": {"type": "integer"}},
                                    "additionalProperties": False}])
def test_property_names_union_keeps_whole_keys(extra):
    """A propertyNames union is an alternation of quoted strings: the key is used whole (cutting
    the quotes off its ends once broke the alternation)."""
    names = {"type": "object", "propertyNames": {"oneOf": [{"pattern": "^[a-f0-9]{4}-g-[0-9]+$"},
                                                           {"pattern": "^w-"}]}, **extra}
    assert accepts(names, {"ae5f-g-1": 1, "w-x": 2}) and accepts(names, {})
    assert not accepts(names, {"ae5f-g-": 1}) and not accepts(names, {"x": 1})
