"""LazyGrammar: the same masks, next states and forced bytes as CompiledGrammar (on tiny and
real vocabularies), and the compiler's use of it for automata too big to index in time."""
from __future__ import annotations

import json

import numpy as np
import pytest

from radixgen.constrained import (CompiledGrammar, GrammarCompiler, JsonOptions, LazyGrammar, compile_lazy,
                                  compile_regex, json_schema_to_regex, token_vocab_from_tokenizer)
from radixgen.constrained.compiler import JSON_MARKER
from radixgen.constrained.schema.json_schema import NO_LIMITS
from radixgen.constrained.mask import row_ids

from constrained_helpers import encode, forced_through, tiny_ids, tiny_vocab

PIECES = ["a", "b", "c", "-", ".", "x", *"0123456789", "bc", "12", "2.", "5-", ".5", "abc", "a\x00"]
VOCAB = tiny_vocab(PIECES)
DEFECT_REGEXES = ["a(bc)?", r"[0-9]{5}(-[0-9]{4})?", r"-?(0|[1-9][0-9]*)(\.[0-9]+)?"]
SCHEMA = {"type": "object", "properties": {
    "name": {"type": "string"}, "age": {"type": "integer", "minimum": 0},
    "city": {"type": "string", "maxLength": 12}, "tags": {"type": "array", "items": {"enum": ["x", "y"]}},
    "meta": {}}, "required": ["name", "age"]}


def assert_same(indexed: CompiledGrammar, lazy: LazyGrammar, max_states: int) -> int:
    """Walk both grammars' states together (breadth-first over every allowed token) and compare
    each state's row, acceptance, first and forced bytes, and every token's next state."""
    pairs = {indexed.initial_state: lazy.initial_state}
    todo = [indexed.initial_state]
    while todo:
        s = todo.pop(0)
        q = pairs[s]
        assert np.array_equal(indexed.row(s), lazy.row(q))
        assert indexed.is_accepting(s) == lazy.is_accepting(q)
        assert indexed.has_continuation(s) == lazy.has_continuation(q)
        assert np.array_equal(indexed.first_bytes(s), lazy.first_bytes(q))
        assert indexed.forced_bytes(s) == lazy.forced_bytes(q)
        for tid in row_ids(indexed.row(s)).tolist():
            if tid == indexed.eos_token_id:
                continue
            s2, q2 = indexed.next_state(s, tid), lazy.next_state(q, tid)
            assert s2 is not None and q2 is not None
            if s2 in pairs:
                assert pairs[s2] == q2  # one lazy state per indexed state
            elif len(pairs) < max_states:
                pairs[s2] = q2
                todo.append(s2)
    return len(pairs)


@pytest.mark.parametrize("regex", [*DEFECT_REGEXES, r"x-(a|b)bc\.[0-9]", "a\x01?(bc|b)x"])
def test_same_as_indexed_tiny_vocab(regex):
    indexed = compile_regex(regex, VOCAB)
    assert assert_same(indexed, compile_lazy(regex, VOCAB, indexed.marker), 1000) > 2


def test_tokens_holding_the_marker_are_never_allowed():
    lazy = compile_lazy("a", VOCAB, b"\x00")
    m = lazy.new_matcher()
    assert PIECES.index("a\x00") + 1 not in m.allowed_token_ids()
    assert not m.advance(PIECES.index("a\x00") + 1) and m.advance(PIECES.index("a") + 1)


def test_first_bytes_without_single_byte_tokens():
    """Bytes with no token of their own: the first bytes come from the mask, as indexed."""
    pieces = ["ab", "ac", "abx", "x"]
    vocab = tiny_vocab(pieces)
    indexed = compile_regex("a(b|c)x?", vocab)
    assert assert_same(indexed, compile_lazy("a(b|c)x?", vocab, indexed.marker), 100) >= 3


def test_matcher_advance_and_rollback():
    lazy = compile_lazy(r"[0-9]{5}(-[0-9]{4})?", VOCAB, b"\x00")
    m = lazy.new_matcher()
    assert m.advance_tokens(tiny_ids(PIECES, "94105-12"))
    end = m.state
    m.rollback(3)
    assert m.can_end() and m.forced_string() is None
    assert m.advance_tokens(tiny_ids(PIECES, "-12")) and m.state == end
    assert forced_through(lazy, tiny_ids(PIECES, "94105-1234"))
    assert not forced_through(lazy, tiny_ids(PIECES, "94105-"))


@pytest.fixture(scope="module")
def smollm_vocab(smollm_tokenizer):
    return token_vocab_from_tokenizer(smollm_tokenizer)


@pytest.mark.parametrize("regex", [*DEFECT_REGEXES, "(café|naïve|日本)!"])
def test_same_as_indexed_real_vocab(smollm_vocab, regex):
    indexed = compile_regex(regex, smollm_vocab)
    assert assert_same(indexed, compile_lazy(regex, smollm_vocab, indexed.marker), 60) > 2


def test_same_as_indexed_json_schema(smollm_vocab):
    regex = json_schema_to_regex(SCHEMA)
    indexed = compile_regex(regex, smollm_vocab, marker=JSON_MARKER)
    assert assert_same(indexed, compile_lazy(regex, smollm_vocab, JSON_MARKER), 40) == 40


def test_schema_compiles_lazy_not_narrowed(smollm_tokenizer, smollm_vocab):
    """The compiler keeps step 0 and masks lazily: a nested free-form value that a narrowed
    regex (free-form depth 1, an old ladder step) refuses is accepted, bad values are not."""
    compiler = GrammarCompiler(smollm_vocab)
    grammar = compiler.compile("json_schema", SCHEMA)
    compiler.shutdown()
    assert isinstance(grammar, LazyGrammar)
    assert grammar.info["path"] == "lazy" and grammar.info["narrowing_step"] == 0
    narrowed = compile_regex(json_schema_to_regex(SCHEMA, options=JsonOptions(any_depth=1)), smollm_vocab,
                             marker=JSON_MARKER)
    deep = {"name": "Ann", "age": 3, "city": "Lyon", "meta": {"a": {"b": [1, {"c": None}]}}}
    for text in (json.dumps(deep), json.dumps(deep, separators=(",", ":"))):
        ids = encode(smollm_tokenizer, text)
        assert forced_through(grammar, ids) and not forced_through(narrowed, ids)
    assert not forced_through(grammar, encode(smollm_tokenizer, '{"name": "Ann", "age": -3}'))
    assert not forced_through(grammar, encode(smollm_tokenizer, '{"name": "Ann", "age": 3, "city": "'
                                                              'Saint-Étienne-du-Rouvray"}'))


def test_json_schemas_and_regexes_are_lazy_choices_indexed(smollm):
    """A JSON schema, even a small plain one, and a user regex are masked lazily (no index to
    wait for); a list of choices is indexed ahead of time."""
    ok = {"type": "object", "properties": {"ok": {"type": "boolean"}}}
    for schema in (ok, {**ok, "additionalProperties": False}):
        assert isinstance(smollm.compile("json_schema", schema), LazyGrammar)
    assert isinstance(smollm.compile("regex", "[0-9]{3}"), LazyGrammar)
    assert isinstance(smollm.compile("choices", ["yes", "no"]), CompiledGrammar)


def test_regex_too_long_for_the_time_left_is_narrowed(smollm_tokenizer, smollm_vocab):
    """The ladder is the last resort: at a (pretended) slow regex build, step 0's objects with
    additional properties beside declared ones (24.7k characters) do not fit; step 2's, without
    those, do (2.3k)."""
    schema = {"type": "object", "properties": {
        k: {"type": "object", "properties": {"name": {"type": "string"}, "size": {"type": "integer"}}}
        for k in "abcd"}}
    compiler = GrammarCompiler(smollm_vocab, json_limits=NO_LIMITS)  # JSON Schema's open objects
    compiler._sec_per_char = 3e-4  # step 0: 7.4 s, step 2: 0.7 s (limit: half of 10 s)
    grammar = compiler.compile("json_schema", schema)
    compiler.shutdown()
    assert grammar.info["narrowing_step"] == 2
    assert forced_through(grammar, encode(smollm_tokenizer, '{"a": {"name": "x", "size": 2}, "c": {}}'))
    assert not forced_through(grammar, encode(smollm_tokenizer, '{"a": {"name": "x", "extra": 2}}'))


def test_recursion_is_called_not_unrolled(smollm, smollm_tokenizer):
    """A recursive $ref is a call (json_refs.py): trees far deeper than the 3 levels unrolling
    gave, in one copy of the node's regex."""
    tree = {"$defs": {"node": {"type": "object", "properties": {
        "name": {"type": "string"}, "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
        "required": ["name"], "additionalProperties": False}}, "$ref": "#/$defs/node"}
    grammar = smollm.compile("json_schema", tree)
    assert grammar.info["path"] == "lazy" and grammar.info["calls"] == 1 and grammar.info["narrowing_step"] == 0

    def deep(d: int) -> dict:
        return {"name": f"n{d}", "kids": [deep(d - 1), {"name": "leaf"}] if d else []}
    assert forced_through(grammar, encode(smollm_tokenizer, json.dumps(deep(12))))
    assert not forced_through(grammar, encode(smollm_tokenizer, json.dumps(
        {"name": "a", "kids": [{"name": "b", "kids": [{"kids": []}]}]})))  # name is required at depth 3 too
