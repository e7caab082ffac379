"""Issue 19, numbers: digit limits by default (and how to lift them), decimal and exclusive
bounds checked against a validator's float semantics, multipleOf; checked with Python's re and
jsonschema, plus the free-form machine and the compiler option on a tiny byte vocabulary."""
from __future__ import annotations

import json
import random
import re

import jsonschema
import pytest

from constrained_helpers import forced_through

from radixgen.constrained import GrammarCompiler, UnsupportedSchemaError, build_token_vocab, json_schema_to_regex
from radixgen.constrained.schema.json_schema import NO_LIMITS, JsonOptions


def matches(schema, text: str, options: JsonOptions = JsonOptions()) -> bool:
    return re.fullmatch(json_schema_to_regex(schema, options=options), text) is not None


def test_digit_limits_by_default_and_off():
    integer, number = {"type": "integer"}, {"type": "number"}
    assert matches(integer, "9" * 16) and matches(integer, "-" + "9" * 16)
    assert not matches(integer, "9" * 17) and matches(integer, "9" * 17, NO_LIMITS)
    assert matches(number, "1." + "5" * 16) and not matches(number, "1." + "5" * 17)
    assert matches(number, "1." + "5" * 17, NO_LIMITS)
    assert matches(number, "1.5e308") and matches(number, "2E-3") and not matches(number, "1e1000")
    assert matches(number, "1e1000", NO_LIMITS)
    assert not matches(number, "1e5", JsonOptions(exp_digits=0))  # exponent off
    # a bounded integer keeps its bound even past the limit, an open side stops at the limit
    assert matches({"type": "integer", "minimum": 10 ** 20}, str(10 ** 20 + 5))
    assert not matches({"type": "integer", "minimum": 0}, "1" * 17)
    assert matches({"type": "integer", "maximum": 5}, "-" + "9" * 16)


def test_limits_hold_in_free_form_values_and_through_the_compiler():
    """The slot machine of free-form values counts digits too; GrammarCompiler(json_limits=
    NO_LIMITS) lifts them for every narrowing step."""
    tv = build_token_vocab([None, *(bytes([b]) for b in range(256))], 0)
    ids = lambda text: [b + 1 for b in text.encode()]
    schema = {"type": "object", "properties": {"n": {"type": "integer"}, "x": {}}}
    long_int, long_free = '{"n":' + "1" * 17 + "}", '{"x":' + "1" * 17 + "}"
    on, off = GrammarCompiler(tv), GrammarCompiler(tv, json_limits=NO_LIMITS)
    try:
        limited, free = on.compile("json_schema", schema), off.compile("json_schema", schema)
        assert forced_through(limited, ids('{"n":1,"x":[1.5,{"a":-2e10}]}'))
        assert not forced_through(limited, ids(long_int)) and not forced_through(limited, ids(long_free))
        assert not forced_through(limited, ids('{"x":0.' + "1" * 17 + "}"))
        assert forced_through(free, ids(long_int)) and forced_through(free, ids(long_free))
    finally:
        on.shutdown()
        off.shutdown()


@pytest.mark.parametrize("seed", range(3))
def test_random_bounds_are_sound_against_float_validation(seed):
    """Every text the regex takes validates (jsonschema parses it to a double); texts on the
    right side of inclusive decimal bounds are taken."""
    rng = random.Random(seed)
    kinds = ["minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"]
    for _ in range(60):
        schema: dict = {"type": rng.choice(["number", "integer"])}
        for kw in rng.sample(kinds, rng.randint(1, 2)):
            schema[kw] = rng.choice([round(rng.uniform(-50, 50), rng.randint(0, 3)), rng.randint(-5, 5), 0.1, -0.25])
        try:
            rx = re.compile(json_schema_to_regex(schema))
        except ValueError:
            continue  # an empty range
        check = jsonschema.Draft7Validator(schema)
        for _ in range(150):
            text = rng.choice([str(rng.randint(-60, 60)), f"{rng.uniform(-60, 60):.{rng.randint(1, 4)}f}"])
            if float(text) == 0 and text.startswith("-"):
                continue  # -0 is never written
            ok, taken = check.is_valid(json.loads(text)), rx.fullmatch(text) is not None
            assert ok or not taken, (schema, text)
            if ok and schema["type"] == "number":
                assert taken, (schema, text)


def test_exclusive_bounds_where_doubles_round_onto_the_bound():
    schema = {"type": "number", "exclusiveMinimum": 5, "exclusiveMaximum": 6.5}
    assert not matches(schema, "5.0000000000000001")  # a double: 5.0, not > 5
    assert matches(schema, "5.0000000000000009") and matches(schema, "6.4999")
    assert not matches(schema, "6.5") and not matches(schema, "5")
    assert matches({"type": "number", "minimum": 0.1, "maximum": 0.75}, "0.1")
    assert not matches({"type": "number", "minimum": 0.1, "maximum": 0.75}, "0.0999")
    assert not matches({"type": "number", "exclusiveMinimum": 0}, "0.0")


@pytest.mark.parametrize("k,lo,hi", [(5, None, None), (25, 0, 1000), (8, -100, 100), (3, None, None),
                                     (7, 10, 60), (100, 150, None)])
def test_multiple_of_integers(k, lo, hi):
    schema: dict = {"type": "integer", "multipleOf": k}
    if lo is not None:
        schema["minimum"] = lo
    if hi is not None:
        schema["maximum"] = hi
    rx = re.compile(json_schema_to_regex(schema))
    check = jsonschema.Draft7Validator(schema)
    taken = [n for n in range(-1200, 1200) if rx.fullmatch(str(n))]
    assert taken and all(check.is_valid(n) for n in taken)
    if k in (5, 25, 8, 100, 7):  # divisors of a power of ten are exact, small ranges are listed
        assert taken == [n for n in range(-1200, 1200) if check.is_valid(n)]
    if hi is None and k in (5, 100):  # exact ones reach the digit limit
        assert rx.fullmatch(str(10 ** 15)) and not rx.fullmatch(str(10 ** 16))


def test_fractional_multiple_of_is_refused():
    with pytest.raises(UnsupportedSchemaError, match="multipleOf"):
        json_schema_to_regex({"type": "number", "multipleOf": 0.01})
    assert matches({"type": "number", "multipleOf": 2.0}, "4") and not matches({"type": "number", "multipleOf": 2.0}, "3")


def test_engine_config_turns_the_limits_off():
    from radixgen.runtime.config import EngineConfig
    from radixgen.runtime.constraint import Constraints
    tv = build_token_vocab([None, *(bytes([b]) for b in range(256))], 0)
    for flag, expected in ((True, JsonOptions()), (False, NO_LIMITS)):
        constraints = Constraints(tv, EngineConfig(grammar_json_finishing=flag, grammar_compile_memory_mb=0))
        try:
            assert constraints.compiler.json_limits == expected
        finally:
            constraints.close()


def test_string_and_array_caps_are_opt_in():
    """Off by default (see the issue-19 measurement); on, they bound strings without maxLength
    and arrays without maxItems, never below minLength / minItems."""
    schema = {"type": "array", "items": {"type": "string"}, "minItems": 1}
    capped = JsonOptions(string_cap=4, items_cap=2)
    assert matches(schema, '["abcdefgh","a","b"]') and not matches(schema, '["abcde"]', capped)
    assert matches(schema, '["abcd","a"]', capped) and not matches(schema, '["a","b","c"]', capped)
    assert matches({"type": "string", "minLength": 6}, '"abcdef"', capped)
    assert matches({"type": "array", "minItems": 3}, "[1,2,3]", capped)


def test_undeclared_keys_only_where_the_schema_says_so():
    """Finishing default: an object with `properties` and no additionalProperties gets no other
    keys (a narrowing); an explicit additionalProperties keeps them; NO_LIMITS restores JSON
    Schema's meaning."""
    closed = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert matches(closed, '{"a": 1}') and not matches(closed, '{"a": 1, "b": 2}')
    assert matches(closed, '{"a": 1, "b": 2}', NO_LIMITS)
    assert matches({**closed, "additionalProperties": True}, '{"a": 1, "b": 2}')
    assert matches({**closed, "additionalProperties": {"type": "integer"}}, '{"a": 1, "b": 2}')
    free = {"type": "object"}  # declares nothing: a free-form map, as before
    assert matches(free, '{"b": 2}')
