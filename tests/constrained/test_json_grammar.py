"""JSON-schema and choices grammars through the SmolLM2 masks, and jump-forward text."""
from __future__ import annotations

import json

import pytest

from constrained_helpers import encode, forced_through

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0},
        "city": {"type": "string", "maxLength": 30},
        "score": {"type": "number"},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}
VALID = [{"name": "Ann", "age": 31}, {"name": "Zoë", "age": 0, "city": "Saint-Étienne", "score": -1.5e-3},
         {"name": "", "age": 7, "score": 10}]
INVALID = ['{"name": "Ann"}', '{"age": 1, "name": "x"}', '{"name": "Ann", "age": -1}',
           '{"name": "Ann", "age": 1, "zip": 1}', '{"name":"Ann","age":1', '{"name":  "Ann","age":1}']


@pytest.fixture(scope="module")
def person(smollm):
    return smollm.compile("json_schema", SCHEMA)


@pytest.mark.parametrize("value", VALID)
def test_valid_instances_pass_the_masks(person, smollm_tokenizer, value):
    for text in (json.dumps(value), json.dumps(value, separators=(",", ":"), ensure_ascii=False)):
        assert forced_through(person, encode(smollm_tokenizer, text)), text


@pytest.mark.parametrize("text", INVALID)
def test_invalid_texts_do_not(person, smollm_tokenizer, text):
    assert not forced_through(person, encode(smollm_tokenizer, text))


def test_forced_strings_for_jump_forward(person, smollm_tokenizer):
    m = person.new_matcher()
    assert m.forced_string() == '{"name":'  # then " " or '"': both spacings are valid
    assert m.advance_tokens(encode(smollm_tokenizer, '{"name": "Ann",'))
    assert m.forced_string() is None
    assert m.advance_tokens(encode(smollm_tokenizer, " "))
    assert m.forced_string() == '"age":'


def test_forced_strings_closed_object(smollm, smollm_tokenizer):
    grammar = smollm.compile("json_schema", {
        "type": "object", "properties": {"id": {"type": "integer"}, "ok": {"type": "boolean"}},
        "required": ["id", "ok"], "additionalProperties": False})
    m = grammar.new_matcher()
    assert m.advance_tokens(encode(smollm_tokenizer, '{"id": 12, "ok": t'))
    assert m.forced_string() == "rue}"
    assert m.advance_tokens(encode(smollm_tokenizer, "rue}"))
    assert m.is_finished()


def test_choices(smollm, smollm_tokenizer):
    grammar = smollm.compile("choices", ["red", "green", "greenish blue"])
    for text in ("red", "green", "greenish blue"):
        assert forced_through(grammar, encode(smollm_tokenizer, text))
    assert not forced_through(grammar, encode(smollm_tokenizer, "gree"))
    assert not forced_through(grammar, encode(smollm_tokenizer, "blue"))
    m = grammar.new_matcher()
    assert m.advance_tokens(encode(smollm_tokenizer, "green"))
    assert m.can_end() and not m.is_finished() and m.forced_string() is None
    assert m.advance_tokens(encode(smollm_tokenizer, "ish"))
    assert m.forced_string() == " blue"


def test_choices_with_special_characters(smollm, smollm_tokenizer):
    grammar = smollm.compile("choices", ["a+b", "(x)", "1.5", "$[^]"])
    for text in ("a+b", "(x)", "1.5", "$[^]"):
        assert forced_through(grammar, encode(smollm_tokenizer, text))
    assert not forced_through(grammar, encode(smollm_tokenizer, "aab"))

