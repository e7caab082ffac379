"""Issue 19, finishing defaults close_strings_at and close_arrays_at (constrained/json_close.py): past the cap a JSON
string may only close, where the grammar lets it; nothing else changes (minLength, patterns, enum
values, keys the grammar forces, rollback), and NO_LIMITS turns it off. On the real tokenizer."""
from __future__ import annotations

import pytest

from radixgen.constrained import GrammarCompiler
from radixgen.constrained.schema.json_schema import NO_LIMITS, JsonOptions
from radixgen.constrained.json_close import TAIL, JsonScan, opens_container, repeating, scan

PAIR = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string", "minLength": 40}},
        "required": ["a", "b"]}


@pytest.fixture(scope="module")
def capped(smollm_tokenizer):
    compiler = GrammarCompiler(smollm_tokenizer, json_limits=JsonOptions(close_strings_at=16))
    yield compiler
    compiler.shutdown()


def feed(tokenizer, matcher, text: str) -> int:
    """Advance over `text`'s tokens; how many were accepted before the first refusal."""
    for i, tid in enumerate(tokenizer.encode(text, add_special_tokens=False)):
        if not matcher.advance(tid):
            return i
    return -1


def allowed_texts(tokenizer, matcher) -> set[str]:
    return {tokenizer.decode([int(t)]) for t in matcher.allowed_token_ids()}


def test_scan_counts_content_bytes_and_escapes():
    s = scan(JsonScan(), b'{"ab\\"c')
    assert s == JsonScan(True, False, 5, (-1,), b'ab\\"c')
    assert scan(s, b'",') == JsonScan(False, False, 5, (-1,))
    assert scan(JsonScan(), b'"x\\') == JsonScan(True, True, 2, (), b"x\\")
    assert scan(scan(JsonScan(), b'"' + b"q" * 300), b"rs").tail == (b"q" * 300 + b"rs")[-TAIL:]


def test_only_a_repeating_tail_counts_as_a_loop():
    assert repeating(b"0" * 32) and not repeating(b"1" + b"0" * 30)  # a number's few zeros are not one
    assert repeating(b"intro " + b"transaction-" * 3)
    sentence = b"The cat sat on the mat and looked out of the window. "  # 54 bytes
    assert repeating(sentence * 3) and not repeating(sentence * 2)
    assert not repeating(bytes(range(65, 65 + 58)) * 2 + b"abc")


def test_a_long_looping_string_may_only_close(smollm_tokenizer, capped):
    m = capped.compile("json_schema", PAIR).new_matcher()
    text = "a long string that says something new all along, then loops. "  # 62 bytes, no repeat
    assert feed(smollm_tokenizer, m, '{"a":"' + text) == -1
    assert len(allowed_texts(smollm_tokenizer, m)) > 1000  # past 16 bytes but not looping: free
    assert feed(smollm_tokenizer, m, "x" * 31) == -1
    assert len(allowed_texts(smollm_tokenizer, m)) > 1000  # 31 x's: not yet LOOP_MIN bytes
    assert feed(smollm_tokenizer, m, "x") == -1
    allowed = allowed_texts(smollm_tokenizer, m)
    assert allowed and all(t.startswith('"') for t in allowed)
    x = smollm_tokenizer.encode("x", add_special_tokens=False)[0]
    assert not m.is_allowed(x) and not m.advance(x)
    m.rollback(1)  # back under the cap: free again
    assert m.is_allowed(x)


def test_minlength_is_honoured_and_keys_stay_forced(smollm_tokenizer, capped):
    """b needs 40 characters: past 16 closing is not allowed, so nothing is restricted."""
    m = capped.compile("json_schema", PAIR).new_matcher()
    assert feed(smollm_tokenizer, m, '{"a":"hi", "b":"' + "y" * 36) == -1
    assert len(allowed_texts(smollm_tokenizer, m)) > 1000  # looping past 16, but under minLength 40
    assert feed(smollm_tokenizer, m, "y" * 4 + '"}') == -1 and m.can_end()
    # a long enum value the grammar forces is not cut either
    long = "z" * 30
    m = capped.compile("json_schema", {"enum": [long, "short"]}).new_matcher()
    assert feed(smollm_tokenizer, m, '"' + long + '"') == -1 and m.can_end()


def test_on_by_default_and_off_with_no_limits(smollm_tokenizer):
    assert JsonOptions().close_strings_at == 128 and NO_LIMITS.close_strings_at is None
    for limits, closes in ((JsonOptions(), True), (NO_LIMITS, False)):
        compiler = GrammarCompiler(smollm_tokenizer, json_limits=limits)
        try:
            m = compiler.compile("json_schema", {"type": "string"}).new_matcher()
            assert feed(smollm_tokenizer, m, '"' + "ab" * 64) == -1
            assert all(t.startswith('"') for t in allowed_texts(smollm_tokenizer, m)) == closes
        finally:
            compiler.shutdown()


def test_scan_tracks_arrays_items():
    s = scan(JsonScan(), b'{"a":[1,2,{"b":[3]},"x,y"')
    assert s.frames == (-1, 3) and not s.in_string


def test_a_long_array_may_only_end(smollm_tokenizer):
    compiler = GrammarCompiler(smollm_tokenizer, json_limits=JsonOptions(close_arrays_at=3))
    try:
        schema = {"type": "array", "items": {"type": "integer"}}
        m = compiler.compile("json_schema", schema).new_matcher()
        assert feed(smollm_tokenizer, m, "[1,2,") == -1
        assert len(allowed_texts(smollm_tokenizer, m)) > 5  # the third item is not written yet
        assert feed(smollm_tokenizer, m, "3") == -1
        assert all(t.startswith("]") for t in allowed_texts(smollm_tokenizer, m))
        # minItems above the limit: no closing is allowed there, so nothing is restricted
        m = compiler.compile("json_schema", {**schema, "minItems": 5}).new_matcher()
        assert feed(smollm_tokenizer, m, "[1,2,3") == -1 and "," in allowed_texts(smollm_tokenizer, m)
    finally:
        compiler.shutdown()


def test_opens_container_reads_the_token_from_where_it_starts():
    assert opens_container(b"{") and opens_container(b"[{") and not opens_container(b"},{")
    assert not opens_container(b'"{') and opens_container(b'"{', in_string=True)  # ends a key, opens
    assert not opens_container(b'":"') and not opens_container(b"]")


def test_free_form_values_stop_nesting_declared_objects_still_open(smollm_tokenizer):
    compiler = GrammarCompiler(smollm_tokenizer, json_limits=JsonOptions(close_depth_at=2))
    try:
        ids = {t: smollm_tokenizer.encode(t, add_special_tokens=False) for t in ("{", '{"', "[", "1")}
        assert all(len(v) == 1 for v in ids.values())
        m = compiler.compile("json_schema", {"type": "object"}).new_matcher()  # free-form
        assert feed(smollm_tokenizer, m, '{"a":{"b":') == -1
        assert not any(m.is_allowed(ids[t][0]) for t in ("{", '{"', "[")) and m.is_allowed(ids["1"][0])
        assert feed(smollm_tokenizer, m, '1,') == -1  # spacing stays the model's choice
        assert m.is_allowed(smollm_tokenizer.encode(" ", add_special_tokens=False)[0])
        assert feed(smollm_tokenizer, m, ' "c":2}}') == -1 and m.can_end()
        inner = {"type": "object", "properties": {"c": {"type": "integer"}}, "required": ["c"]}
        nested = {"type": "object", "required": ["a"], "properties": {"a": {
            "type": "object", "required": ["b"], "properties": {"b": inner}}}}
        m = compiler.compile("json_schema", nested).new_matcher()
        assert feed(smollm_tokenizer, m, '{"a":{"b":{"c":1}}}') == -1 and m.can_end()
    finally:
        compiler.shutdown()
