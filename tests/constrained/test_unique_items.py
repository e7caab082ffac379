"""uniqueItems kept by the matcher (unique_items.py) on SmolLM2's vocabulary: no token may finish
an item equal to an earlier one, whatever the tokenization, with rollback and jump-forward kept
in step."""
from __future__ import annotations

import json

import pytest

from radixgen.constrained import LazyGrammar, make_bitmask
from radixgen.constrained.mask import row_ids
from radixgen.constrained.unique_items import UniqueMatcher

from constrained_helpers import byte_ids, encode, forced_through

STRINGS = {"type": "array", "uniqueItems": True, "items": {"type": "string"}}
CASES = [
    (STRINGS, ["a", "b"], ["a", "a"]),
    (STRINGS, ["DEBUG", "DEBUGX", "DEBU"], ["DEBUG", "TRACE", "DEBUG"]),
    ({"type": "array", "uniqueItems": True, "items": {"type": "integer"}}, [1, 12, 123, -1], [1, 12, 1]),
    ({"type": "array", "uniqueItems": True, "items": {"type": "number"}}, [1, 1.5, 15], [2.5, 2.5]),
    ({"type": "array", "uniqueItems": True}, [{"a": 1}, {"a": 2}, [1], "x", None], [{"a": [1]}, {"a": [1]}]),
    ({"type": "array", "uniqueItems": True}, [True, False], [None, True, None]),
    ({"type": "array", "uniqueItems": True, "items": {"type": "array", "items": {"type": "string"}}},
     [["a"], ["a", "b"], []], [["a"], ["a"]]),
    ({"type": "object", "properties": {"tags": STRINGS, "n": {"type": "integer"}}, "required": ["tags", "n"]},
     {"tags": ["x", "y"], "n": 1}, {"tags": ["x", "y", "x"], "n": 1}),
    # a uniqueItems array inside an item of another one: both kept
    ({"type": "array", "uniqueItems": True, "items": STRINGS}, [["a", "b"], ["b", "a"]], [["a", "b"], ["a", "a"]]),
]


def texts(x) -> list[str]:
    return [json.dumps(x), json.dumps(x, separators=(",", ":"))]


@pytest.mark.parametrize("schema,good,bad", CASES)
def test_distinct_items_only(smollm, smollm_tokenizer, schema, good, bad):
    grammar = smollm.compile("json_schema", schema)
    assert isinstance(grammar, LazyGrammar) and isinstance(grammar.new_matcher(), UniqueMatcher)
    for text in texts(good):
        assert forced_through(grammar, encode(smollm_tokenizer, text)), text
        assert forced_through(grammar, byte_ids(grammar, text)), text
    for text in texts(bad):
        assert not forced_through(grammar, encode(smollm_tokenizer, text)), text
        assert not forced_through(grammar, byte_ids(grammar, text)), text


def advanced(grammar, tokenizer, text: str) -> UniqueMatcher:
    matcher = grammar.new_matcher()
    assert matcher.advance_tokens(byte_ids(grammar, text))
    return matcher


def pieces_allowed(matcher, grammar) -> set[bytes]:
    bitmask = make_bitmask(1, grammar.vocab_size)
    matcher.fill_bitmask(bitmask, 0)
    pieces = grammar.token_vocab.matrix.pieces
    return {pieces[i] for i in row_ids(bitmask[0].numpy()).tolist() if i < len(pieces) and pieces[i]}


def test_mask_takes_out_exactly_the_finishing_tokens(smollm, smollm_tokenizer):
    grammar = smollm.compile("json_schema", STRINGS)
    keys = grammar.token_vocab.by_bytes[0]
    allowed = pieces_allowed(advanced(grammar, smollm_tokenizer, '["name", "name'), grammar)
    finishing = {p for p in keys if p.startswith(b'"')}
    assert len(finishing) > 40 and not finishing & allowed
    assert {b"s", b"\\", b"d"} <= allowed  # writing on stays allowed
    allowed = pieces_allowed(advanced(grammar, smollm_tokenizer, '["name", "nam'), grammar)
    assert {b'"', b'",', b"e"} <= allowed  # "nam" is not a repeat, nor is "name" yet
    # before a new item (after ",") the whole item is out, with or without its leading space
    allowed = pieces_allowed(advanced(grammar, smollm_tokenizer, '["",'), grammar)
    repeats = {p for p in keys if p.startswith(b'""') or p.startswith(b' ""')}
    assert repeats and not repeats & allowed and {b'"', b' "'} <= allowed


def test_rollback_forgets_items(smollm, smollm_tokenizer):
    grammar = smollm.compile("json_schema", STRINGS)
    matcher = advanced(grammar, smollm_tokenizer, '["a", "b", "a')
    quote = byte_ids(grammar, '"')[0]
    assert not matcher.is_allowed(quote)
    matcher.rollback(len(byte_ids(grammar, ' "b", "a')))  # back to ["a",
    assert matcher.advance_tokens(byte_ids(grammar, ' "b"'))
    matcher.rollback(len(byte_ids(grammar, '"a", "b"')))  # back to [
    assert matcher.advance_tokens(byte_ids(grammar, '"b", "a"]')) and matcher.can_end()
    # same number of tokens, different text: what is forbidden is worked out again
    matcher = advanced(grammar, smollm_tokenizer, '["a", "b", "c')
    assert matcher.is_allowed(quote)
    matcher.rollback(1)
    assert matcher.advance(byte_ids(grammar, "a")[0]) and not matcher.is_allowed(quote)


def test_no_token_leads_into_a_forced_repeat(smollm, smollm_tokenizer):
    """`a` after `["alpha", "` is refused: the grammar would force `lpha"` after it."""
    schema = {"type": "array", "uniqueItems": True, "items": {"enum": ["alpha", "beta"]}}
    grammar = smollm.compile("json_schema", schema)
    matcher = advanced(grammar, smollm_tokenizer, '["alpha", "')
    a, b = byte_ids(grammar, "ab")
    assert not matcher.is_allowed(a) and matcher.is_allowed(b)


def test_jump_forward_never_writes_a_repeated_item(smollm, smollm_tokenizer):
    schema = {"type": "array", "uniqueItems": True, "items": {"const": "alpha"}}
    grammar = smollm.compile("json_schema", schema)
    matcher = advanced(grammar, smollm_tokenizer, '["alpha", ')  # (allowed by the fallback)
    assert grammar.forced_bytes(matcher.state) == b'"alpha"'  # what the grammar alone would jump
    assert matcher.forced_string() is None


def test_all_items_used_falls_back_to_the_grammar(smollm, smollm_tokenizer):
    """Every value of a two-value enum written: no token can avoid a repeat, so the mask is the
    grammar's own row rather than an empty one (documented: the request is never left stuck)."""
    schema = {"type": "array", "uniqueItems": True, "items": {"enum": ["alpha", "beta"]}}
    grammar = smollm.compile("json_schema", schema)
    matcher = advanced(grammar, smollm_tokenizer, '["alpha", "beta", "')
    assert pieces_allowed(matcher, grammar)
