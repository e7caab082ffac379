"""Free-form values as slots (json_free.py, slot_automaton.py): the same language as the regex
unrolling, byte for byte, but at any depth; and through the compiler on SmolLM2's vocabulary."""
from __future__ import annotations

import json
import random
import re

import pytest

from radixgen.constrained import GrammarCompiler, JsonOptions, LazyGrammar, json_schema_to_regex
from radixgen.constrained.schema.json_schema import json_schema_parts
from radixgen.constrained.automata.byte_automaton import DEAD
from radixgen.constrained.compiler import JSON_MARKER
from radixgen.constrained.automata.slot_automaton import SlotAutomaton

from constrained_helpers import encode, forced_through

WS = "[ ]?"


def slot_accepts(automaton: SlotAutomaton, text: bytes) -> bool:
    state = automaton.walk(automaton.initial_state, text)
    return state != DEAD and automaton.is_accepting(state)


def random_value(rng: random.Random, depth: int):
    kind = rng.randrange(7 if depth else 4)
    if kind == 0:
        return rng.choice(["", "a", "é\u00e9", 'q"\\', "日本", "\U0001f600", "tab\tnl\n", "\u2028"])
    if kind == 1:
        return rng.choice([0, -1, 7, 12, 3.5, -0.25, 1e21, 2.5e-8])
    if kind == 2:
        return rng.choice([True, False, None])
    if kind == 3:
        return rng.choice([[], {}])
    if kind in (4, 5):
        return [random_value(rng, depth - 1) for _ in range(rng.randrange(4))]
    return {rng.choice(["a", "b", "k é", ""]): random_value(rng, depth - 1) for _ in range(rng.randrange(4))}


def texts(seed: int, n: int) -> list[str]:
    """Random JSON texts (compact and default spacing) and mutations of them (mostly invalid)."""
    rng, out = random.Random(seed), []
    for _ in range(n):
        x = random_value(rng, 3)
        for text in (json.dumps(x, separators=(",", ":"), ensure_ascii=rng.random() < 0.5), json.dumps(x)):
            out.append(text)
            i = rng.randrange(len(text) + 1)
            out.append(text[:i] + rng.choice([",", " ", "]", "}", '"', "\\", "1", "-", ".", "e", "x", ":", ""])
                       + text[i + rng.randrange(2):])
    return out


def test_slot_is_the_unrolled_regex_at_any_depth():
    """Where the regex unrolled to depth 3 accepts, the slot does; where the slot accepts, the text
    is JSON with whitespace only after , and : and the regex accepts it too unless it nests deeper."""
    automaton = SlotAutomaton(json_schema_to_regex({}, WS, JsonOptions(slots=True)), JSON_MARKER, WS)
    unrolled = re.compile(json_schema_to_regex({}, WS, JsonOptions(any_depth=3)))
    checked = 0
    for text in texts(0, 150):
        ours, theirs = slot_accepts(automaton, text.encode()), bool(unrolled.fullmatch(text))
        if theirs:
            assert ours, text
        if ours:
            json.loads(text)
            assert not re.search(r"\s[,:\]}]|[\[{]\s", re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)), text
            assert theirs or _depth(text) > 3, text
        checked += ours
    assert checked > 150  # most texts were valid ones


def _depth(text: str) -> int:
    depth = best = 0
    for ch in re.sub(r'"(?:[^"\\]|\\.)*"', '""', text):
        depth += ch in "[{"
        depth -= ch in "]}"
        best = max(best, depth)
    return best


@pytest.mark.parametrize("raw", [b'"\xff"', b'"\xc3"', b'"\xc0\xaf"', b'"\xed\xa0\x80"', b'"\xf4\x90\x80\x80"',
                                 b'"a\x01"', b'"\\x"', b'"\\u12G4"', b"01", b"1.", b"-", b"tru", b"[1,]",
                                 b"{,}", b'{"a" :1}', b"[1 ,2]", b'{"a":1 }', b"[] "])
def test_slot_rejects(raw):
    automaton = SlotAutomaton(json_schema_to_regex({}, WS, JsonOptions(slots=True)), JSON_MARKER, WS)
    assert not slot_accepts(automaton, raw)


def test_slot_text_after_a_value():
    """A slot inside declared structure: the text after the value (here `}`, `,` after a number
    that ends only when a non-digit comes) is read by the regex again."""
    schema = {"type": "object", "properties": {"meta": {}, "n": {"type": "integer"}}, "required": ["meta", "n"]}
    automaton = SlotAutomaton(json_schema_to_regex(schema, WS, JsonOptions(slots=True)), JSON_MARKER, WS)
    for text in ('{"meta":12,"n":3}', '{"meta": [[[[[[[[1]]]]]]]], "n": -4}', '{"meta":"}","n":0}',
                 '{"meta":{"n":1},"n":1}'):
        assert slot_accepts(automaton, text.encode()), text
    for text in ('{"meta":12"n":3}', '{"meta":12,"n":3,}', '{"meta":,"n":3}', '{"meta":1 2,"n":3}'):
        assert not slot_accepts(automaton, text.encode()), text


def test_deep_free_form_through_the_compiler(smollm, smollm_tokenizer):
    """Lazy over slots: free-form values nest past any unrolled depth, and the masks still
    refuse broken JSON there."""
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "meta": {}}, "required": ["meta"]}
    grammar = smollm.compile("json_schema", schema)
    assert isinstance(grammar, LazyGrammar) and grammar.info["narrowing_step"] == 0
    deep = {"meta": {"a": [[{"b": [[[{"c": [1, 2.5, None, "x"]}]]]}]]}}
    for text in (json.dumps(deep), json.dumps(deep, separators=(",", ":"))):
        assert forced_through(grammar, encode(smollm_tokenizer, text))
    for text in ('{"meta": [1,]}', '{"meta": {"a" 1}}', '{"meta": [[1]}'):
        assert not forced_through(grammar, encode(smollm_tokenizer, text))


def parts_automaton(schema) -> SlotAutomaton:
    regex, calls = json_schema_parts(schema, WS, JsonOptions(slots=True, calls=True))
    return SlotAutomaton(regex, JSON_MARKER, WS, calls)


def test_mutual_recursion_is_called():
    """A -> B -> A: each recursive $ref is a call; deep alternations parse, breaks don't."""
    schema = {"$defs": {
        "expr": {"anyOf": [{"type": "integer"}, {"$ref": "#/$defs/op"}]},
        "op": {"type": "object", "properties": {"op": {"enum": ["+", "*"]},
                                                "args": {"type": "array", "items": {"$ref": "#/$defs/expr"}}},
               "required": ["op", "args"], "additionalProperties": False}},
        "$ref": "#/$defs/expr"}
    automaton = parts_automaton(schema)

    def nest(d: int):
        return d if d == 0 else {"op": "+*"[d % 2], "args": [nest(d - 1), d]}
    for d in (0, 1, 5, 20):
        assert slot_accepts(automaton, json.dumps(nest(d)).encode()), d
    for bad in ('{"op": "-", "args": []}', '{"op": "+", "args": [{"op": "+"}]}', '{"op": "+", "args": [1.5]}'):
        assert not slot_accepts(automaton, bad.encode()), bad


def test_large_definition_used_often_is_called_once():
    """A big definition used in many places: one regex, called, not one copy per use."""
    item = {"type": "object", "properties": {f"f{i}": {"type": "string", "maxLength": 8} for i in range(8)},
            "additionalProperties": False}
    schema = {"$defs": {"item": item}, "type": "object",
              "properties": {f"p{i}": {"$ref": "#/$defs/item"} for i in range(12)}, "additionalProperties": False}
    inline, _ = json_schema_parts(schema, WS, JsonOptions(slots=True))
    regex, calls = json_schema_parts(schema, WS, JsonOptions(slots=True, calls=True))
    assert len(calls) == 1 and len(regex) + len(calls[3]) < len(inline) / 5
    automaton = SlotAutomaton(regex, JSON_MARKER, WS, calls)
    good = {"p0": {"f1": "abc"}, "p7": {}, "p11": {"f0": "", "f7": "12345678"}}
    assert slot_accepts(automaton, json.dumps(good).encode())
    assert not slot_accepts(automaton, json.dumps({"p0": {"f1": "123456789"}}).encode())  # maxLength 8


def test_left_recursion_stops_at_the_call_bound():
    """A $ref that calls itself before any text: followed only MAX_CALLS deep, never forever."""
    schema = {"$defs": {"x": {"anyOf": [{"$ref": "#/$defs/x"}, {"type": "boolean"}]}}, "$ref": "#/$defs/x"}
    automaton = parts_automaton(schema)
    assert slot_accepts(automaton, b"true") and not slot_accepts(automaton, b"1")
