"""Grammar-constrained generation through the engine on the bundled model."""
from __future__ import annotations

import json
import re

import jsonschema
import pytest


SCHEMA = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 20}, "age": {"type": "integer", "minimum": 0},
    "city": {"type": "string", "maxLength": 20}}, "required": ["name", "age", "city"]}
ASK = [{"role": "user", "content": "Extract: John is 31 and lives in Paris. Reply in JSON."}]


def test_json_schema_output_validates_and_jump_forward_saves_steps(engine):
    """A request that asks for logprobs decodes token by token (every token needs its logprob):
    the same request without jump-forward."""
    steps = {}
    for logprobs in (False, True):
        before = engine.get_stats()["forwards"]
        out = engine.chat(ASK, {"temperature": 0, "max_new_tokens": 64, "json_schema": json.dumps(SCHEMA)},
                          return_logprob=logprobs)
        steps[logprobs] = engine.get_stats()["forwards"] - before
        jsonschema.validate(json.loads(out["text"]), SCHEMA)
        assert out["meta_info"]["finish_reason"]["type"] == "stop"
    assert steps[False] < steps[True], "jump-forward should need fewer model steps"


def test_regex_choices_and_length_limit(engine):
    jf = engine
    out = jf.generate("My phone number is ", {"temperature": 0, "max_new_tokens": 20, "regex": r"\d{3}-\d{4}"})
    assert re.fullmatch(r"\d{3}-\d{4}", out["text"])
    pick = jf.generate("The best fruit is", {"temperature": 0, "choices": ["apple pie", "banana", "cherry"]})
    assert pick["text"] in ("apple pie", "banana", "cherry")
    cut = jf.generate("Count: ", {"temperature": 0, "max_new_tokens": 3, "regex": r"[0-9]{10}"})
    assert cut["meta_info"]["finish_reason"] == {"type": "length", "length": 3} and len(cut["output_ids"]) == 3


def test_refused_spec_alone_raises_in_batch_aborts_only_itself(engine):
    jf = engine
    with pytest.raises(ValueError, match="regex"):
        jf.generate("x", {"regex": "(unclosed", "max_new_tokens": 4})
    bad_schema = '{"type": "object", "properties": '  # not JSON at all
    outs = jf.generate(["x", "y", "z"], [{"regex": "(unclosed", "max_new_tokens": 4},
                                         {"json_schema": bad_schema, "max_new_tokens": 4},
                                         {"max_new_tokens": 4, "temperature": 0}])
    assert outs[0]["meta_info"]["finish_reason"]["type"] == "abort"
    assert outs[1]["meta_info"]["finish_reason"]["type"] == "abort"
    assert "json_schema" in outs[1]["meta_info"]["finish_reason"]["message"]
    assert outs[2]["meta_info"]["finish_reason"]["type"] == "length"
    s = jf.get_stats()
    assert s["kv_locked"] == 0 and s["kv_free"] + s["kv_evictable"] == s["kv_capacity"]


def test_batch_of_constrained_and_free_requests(engine):
    jf = engine
    params = [{"temperature": 0, "max_new_tokens": 48, "json_schema": SCHEMA} if i % 2 else
              {"temperature": 0, "max_new_tokens": 16} for i in range(8)]
    outs = jf.chat([ASK] * 8, params)
    alone = jf.chat([ASK], {"temperature": 0, "max_new_tokens": 16})[0]
    for out in outs[::2]:  # a mask leaking into free rows would change (or end) their text
        assert out["output_ids"] == alone["output_ids"] and out["meta_info"]["finish_reason"] == \
            alone["meta_info"]["finish_reason"]
    for i, out in enumerate(outs):
        if i % 2:
            jsonschema.validate(json.loads(out["text"]), SCHEMA)


def test_unique_items_hold_where_the_model_repeats(engine):
    """Greedy, this model fills a string array with one tag over and over; under uniqueItems the
    matcher masks every token that would finish a repeat, and the array validates."""
    jf = engine
    ask = [{"role": "user", "content": "Give me tags for a blog post about Python programming, as a JSON array."}]
    schema = {"type": "array", "items": {"type": "string", "maxLength": 20}, "minItems": 5, "maxItems": 8}
    free = json.loads(jf.chat(ask, {"temperature": 0, "max_new_tokens": 80, "json_schema": schema})["text"])
    assert len(set(free)) < len(free)  # the repeats this test is about
    unique = {**schema, "uniqueItems": True}
    out = jf.chat(ask, {"temperature": 0, "max_new_tokens": 80, "json_schema": unique})
    assert out["meta_info"]["finish_reason"]["type"] == "stop"
    jsonschema.validate(json.loads(out["text"]), unique)
