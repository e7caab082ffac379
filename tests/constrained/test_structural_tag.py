"""Structural tags without a model: the spec parser's refusals, and the matcher on SmolLM2's real
vocabulary (free text, a trigger, a schema-constrained span, the end marker, free text again;
forced tags; masks agreeing with advance; rollback; random walks whose tags always validate)."""
from __future__ import annotations

import json
import re

import jsonschema
import numpy as np
import pytest

from radixgen.constrained import make_bitmask
from radixgen.constrained.structural_tag import parse_structural_tag
from radixgen.constrained.tag_grammar import TagCompiler

WEATHER = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12},
                                            "days": {"type": "integer", "minimum": 1, "maximum": 7}},
           "required": ["city"]}
TIME = {"type": "object", "properties": {"tz": {"type": "string", "enum": ["UTC", "CET"]}}, "required": ["tz"]}
LEGACY = {"type": "structural_tag", "triggers": ["<function="],
          "structures": [{"begin": "<function=get_weather>", "schema": WEATHER, "end": "</function>"},
                         {"begin": "<function=get_time>", "schema": TIME, "end": "</function>"}]}


def tagged(kind: str, **flags) -> dict:
    tag = {"begin": "<call>", "content": {"type": "json_schema", "json_schema": WEATHER}, "end": "</call>"}
    fmt = {"type": kind, "tags": [tag], **flags}
    if kind == "triggered_tags":
        fmt["triggers"] = ["<call>"]
    return {"type": "structural_tag", "format": fmt}


@pytest.fixture(scope="module")
def tags(smollm):
    return TagCompiler(smollm.submit, smollm.token_vocab)


@pytest.fixture(scope="module")
def tok(smollm_tokenizer):
    return smollm_tokenizer


def run(matcher, tok, text: str) -> bool:
    """Feed `text` as the tokenizer splits it, checking the mask agrees with advance at each token."""
    bitmask = make_bitmask(1, matcher.grammar.vocab_size)
    for tid in tok.encode(text, add_special_tokens=False):
        matcher.fill_bitmask(bitmask, 0)
        in_mask = bool((int(bitmask[0, tid >> 5]) >> (tid & 31)) & 1)
        assert in_mask == matcher.is_allowed(tid), f"mask and is_allowed disagree on {tok.decode([tid])!r}"
        if not matcher.advance(tid):
            return False
    return True


@pytest.mark.parametrize("spec, message", [
    ("{not json", "not valid JSON"),
    ({"type": "structural_tag"}, "needs 'structures'"),
    ({"structures": [{"begin": "<a>", "schema": {}, "end": "</a>"}], "triggers": ["<b"]}, "starts with none"),
    ({"structures": [{"begin": "<a>", "schema": {}, "end": ""}, {"begin": "<a>x", "schema": {}, "end": ""}],
      "triggers": ["<a"]}, "is a prefix of"),
    ({"structures": [{"begin": "<a>", "schema": 3, "end": ""}], "triggers": ["<a"]}, "JSON schema object"),
    ({"format": {"type": "sequence", "elements": []}}, "'sequence' is not supported"),
    ({"format": {"type": "triggered_tags", "triggers": ["<a"],
                 "tags": [{"begin": "<a>", "content": {"type": "any_text"}, "end": ""}]}}, "'any_text' is not supported"),
    ({"format": {"type": "triggered_tags", "triggers": ["<a", "<z"],
                 "tags": [{"begin": "<a>", "content": {"type": "json_schema", "json_schema": {}}, "end": ""}]}},
     "opens none of the tags"),
])
def test_bad_specs_are_refused_by_name(spec, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_structural_tag(spec)


def test_a_bad_schema_fails_the_future_naming_the_tag(tags):
    spec = tagged("triggered_tags")
    spec["format"]["tags"][0]["content"]["json_schema"] = {"type": "strin"}
    with pytest.raises(ValueError, match=r"tag 0 \('<call>'\) schema: .*strin"):
        tags.submit(spec).result()


def test_free_text_then_a_tag_then_free_text(tags, tok):
    m = tags.submit(LEGACY).result().new_matcher()
    assert m.can_end()
    assert run(m, tok, 'Let me check. <function=get_weather>{"city": "Paris", "days": 3}</function>')
    assert m.can_end()
    assert run(m, tok, " And the time: <function=get_time>")
    assert not m.can_end()  # inside a tag the output may not end
    assert run(m, tok, '{"tz": "CET"}</function> Done.')
    assert m.can_end() and not m.is_finished()


@pytest.mark.parametrize("text", [
    '<function=get_weather>{"town": "Paris"}',               # a key the schema does not have
    '<function=get_weather>{"city": "Paris", "days": 9}',     # out of range
    '<function=get_weather>{"city": "a very long city name"}',  # over maxLength
    '<function=get_date>',                                    # no such tag after the trigger
    '<function=get_time>{"tz": "CET"}</func ',                # a wrong end marker
])
def test_what_breaks_a_tag_is_refused(tags, tok, text):
    m = tags.submit(LEGACY).result().new_matcher()
    assert not run(m, tok, text)


def test_no_token_straddles_a_trigger(tags, tok, smollm):
    """A token that would complete the trigger before its last byte is masked in free text (the
    span's grammar could not start mid-token); the one that ends exactly there is allowed."""
    grammar = tags.submit(LEGACY).result()
    m = grammar.new_matcher()
    assert run(m, tok, "x <function")
    pieces = smollm.token_vocab.matrix.pieces
    allowed = set(m.allowed_token_ids().tolist())
    straddling = [i for i, p in enumerate(pieces) if p and p.startswith(b"=") and len(p) > 1]
    assert straddling and not allowed.intersection(straddling)
    assert tok.convert_tokens_to_ids("=") in allowed
    inside = [i for i, p in enumerate(pieces) if p and b"<function=" in p[:-1]]
    fresh = set(grammar.new_matcher().allowed_token_ids().tolist())
    assert not fresh.intersection(inside)


def test_forced_tags_with_separator(tags, tok):
    one = tags.submit(tagged("tags_with_separator", separator="\n", at_least_one=True,
                             stop_after_first=True)).result().new_matcher()
    assert not one.can_end()  # at least one tag: EOS is not allowed before it
    assert not run(one, tok, "Sure")  # no free text
    assert one.forced_string() == "<call>"  # the begin is forced: jump-forward writes it
    assert run(one, tok, '<call>{"city": "Rome"}</call>')
    assert one.is_finished()  # stop_after_first
    many = tags.submit(tagged("tags_with_separator", separator="\n", at_least_one=True)).result().new_matcher()
    assert run(many, tok, '<call>{"city": "Rome"}</call>\n<call>{"city": "Oslo"}</call>')
    assert many.can_end() and not many.is_finished()
    assert not run(many, tok, "<call>")  # tags after the first need the separator


def test_rollback_restores_every_position(tags, tok):
    text = 'Hi <function=get_weather>{"city": "Paris"}</function> ok <function=get_time>{"tz": "UTC"}'
    ids = tok.encode(text, add_special_tokens=False)
    grammar = tags.submit(LEGACY).result()
    m = grammar.new_matcher()
    assert m.advance_tokens(ids)
    for back in range(len(ids), -1, -3):
        m.rollback(m.num_tokens - back)
        fresh = grammar.new_matcher()
        assert fresh.advance_tokens(ids[:back])
        assert np.array_equal(m.allowed_token_ids(), fresh.allowed_token_ids()), f"after {back} tokens"
        assert m.advance_tokens(ids[back:])


@pytest.mark.parametrize("seed", range(6))
def test_random_walks_always_validate(tags, tok, seed):
    """Tokens drawn at random among the allowed ones (a stand-in for any model): every tag written
    parses and validates against its schema."""
    rng = np.random.default_rng(seed)
    m = tags.submit(tagged("tags_with_separator", separator="\n", at_least_one=True)).result().new_matcher()
    ids: list[int] = []
    while not m.is_finished() and len(ids) < 300:
        allowed = m.allowed_token_ids()
        if m.can_end() and len(ids) > 60:
            tid = tok.eos_token_id
        else:
            allowed = allowed[allowed != tok.eos_token_id]
            tid = int(rng.choice(allowed))
        assert m.advance(tid)
        ids.append(tid)
        forced = m.forced_string()  # jump forward as the engine does
        if forced:
            more = tok.encode(forced, add_special_tokens=False)
            assert m.advance_tokens(more)
            ids += more
    assert m.is_finished(), "the walk never reached an end"
    text = tok.decode([i for i in ids if i != tok.eos_token_id])
    bodies = re.findall(r"<call>(.*?)</call>", text, re.S)
    assert bodies and re.fullmatch(r"(<call>.*?</call>\n?)+", text, re.S), text
    for body in bodies:
        jsonschema.validate(json.loads(body), WEATHER)
