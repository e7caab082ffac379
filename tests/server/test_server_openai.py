"""The OpenAI routes through the real `openai` client."""
from __future__ import annotations

import json

import jsonschema
import openai
import pytest

pytestmark = pytest.mark.slow
CHAT = [{"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Name a colour."}]


def test_models(oai: openai.OpenAI) -> None:
    models = oai.models.list().data
    assert len(models) == 1 and models[0].object == "model"
    assert oai.models.retrieve(models[0].id).id == models[0].id


def test_chat(oai: openai.OpenAI, assert_idle) -> None:
    first = oai.chat.completions.create(model="default", messages=CHAT, max_tokens=8, temperature=0)
    choice = first.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert 0 < first.usage.completion_tokens <= 8
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens
    again = oai.chat.completions.create(model="default", messages=CHAT, max_tokens=8, temperature=0)
    assert again.choices[0].message.content == choice.message.content  # greedy is deterministic
    # the same conversation again: its prompt comes from the radix cache
    assert again.usage.prompt_tokens_details.cached_tokens >= first.usage.prompt_tokens - 1
    assert_idle()


def test_chat_n_stop_seed(oai: openai.OpenAI) -> None:
    out = oai.chat.completions.create(model="default", messages=CHAT, max_tokens=8, n=3, seed=7,
                                      temperature=0.9, stop=["\n"])
    assert [c.index for c in out.choices] == [0, 1, 2]
    assert all("\n" not in c.message.content for c in out.choices)
    assert 3 <= out.usage.completion_tokens <= 3 * 8  # summed over the choices
    again = oai.chat.completions.create(model="default", messages=CHAT, max_tokens=8, n=3, seed=7,
                                        temperature=0.9, stop=["\n"])
    assert [c.message.content for c in again.choices] == [c.message.content for c in out.choices]


def test_chat_stream_with_usage(oai: openai.OpenAI) -> None:
    chunks = list(oai.chat.completions.create(model="default", messages=CHAT, max_tokens=12, temperature=0,
                                              stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishes) == 1
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens <= 12
    plain = oai.chat.completions.create(model="default", messages=CHAT, max_tokens=12, temperature=0)
    assert text == plain.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens


def test_chat_stream_n(oai: openai.OpenAI) -> None:
    chunks = list(oai.chat.completions.create(model="default", messages=CHAT, max_tokens=6, n=2, seed=3,
                                              temperature=0.8, stream=True))
    texts, finishes = {0: "", 1: ""}, {0: [], 1: []}
    for chunk in chunks:
        for c in chunk.choices:
            texts[c.index] += c.delta.content or ""
            finishes[c.index] += [c.finish_reason] if c.finish_reason else []
    assert all(len(f) == 1 for f in finishes.values())
    plain = oai.chat.completions.create(model="default", messages=CHAT, max_tokens=6, n=2, seed=3, temperature=0.8)
    assert [texts[0], texts[1]] == [c.message.content for c in plain.choices]  # seeded: same samples


def test_chat_logprobs(oai: openai.OpenAI) -> None:
    out = oai.chat.completions.create(model="default", messages=CHAT, max_tokens=5, temperature=0,
                                      logprobs=True, top_logprobs=3)
    content = out.choices[0].logprobs.content
    assert len(content) == out.usage.completion_tokens
    for entry in content:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 3
        # greedy: the chosen token is the best (bf16 logits tie often, so compare values)
        assert entry.logprob >= entry.top_logprobs[0].logprob - 1e-4
        assert entry.token in [t.token for t in entry.top_logprobs]


def test_completions(oai: openai.OpenAI) -> None:
    out = oai.completions.create(model="default", prompt="The capital of France is", max_tokens=6, temperature=0)
    assert out.object == "text_completion" and out.choices[0].text
    assert out.usage.prompt_tokens > 0 and out.usage.completion_tokens <= 6


def test_completions_batch_and_ids(oai: openai.OpenAI) -> None:
    out = oai.completions.create(model="default", prompt=["One, two,", "Red, green,"], max_tokens=4, n=2)
    assert [c.index for c in out.choices] == [0, 1, 2, 3]
    ids = oai.completions.create(model="default", prompt=[504, 2988, 314], max_tokens=3, temperature=0)
    assert ids.usage.prompt_tokens == 3


def test_completions_logprobs_echo(oai: openai.OpenAI) -> None:
    out = oai.completions.create(model="default", prompt="Once upon a time", max_tokens=4, temperature=0,
                                 logprobs=2, echo=True)
    choice = out.choices[0]
    choice_lp = choice.logprobs
    assert choice.text.startswith("Once upon a time")
    assert len(choice_lp.tokens) == out.usage.prompt_tokens + out.usage.completion_tokens
    assert choice_lp.token_logprobs[0] is None and all(lp <= 0 for lp in choice_lp.token_logprobs[1:])
    assert "".join(choice_lp.tokens) == choice.text
    assert choice_lp.text_offset[1] == len(choice_lp.tokens[0])


def test_completions_stream(oai: openai.OpenAI) -> None:
    chunks = list(oai.completions.create(model="default", prompt="Count: one, two,", max_tokens=8,
                                         temperature=0, stream=True, logprobs=1))
    text = "".join(c.choices[0].text for c in chunks)
    tokens = [t for c in chunks for t in (c.choices[0].logprobs.tokens if c.choices[0].logprobs else [])]
    plain = oai.completions.create(model="default", prompt="Count: one, two,", max_tokens=8, temperature=0)
    assert text == plain.choices[0].text
    assert len(tokens) == plain.usage.completion_tokens
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_sglang_extras_and_unknown_fields(oai: openai.OpenAI) -> None:
    out = oai.chat.completions.create(model="default", messages=CHAT, max_tokens=6, temperature=0.5,
                                      extra_body={"top_k": 5, "min_p": 0.05, "ignore_eos": True,
                                                  "min_tokens": 6, "some_client_field": {"x": 1}})
    assert out.usage.completion_tokens == 6 and out.choices[0].finish_reason == "length"


def test_response_format_json_schema(oai: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
                                               "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    out = oai.chat.completions.create(
        model="default", max_tokens=32, temperature=0,
        messages=[{"role": "user", "content": "Give a person as JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}})
    jsonschema.validate(json.loads(out.choices[0].message.content), schema)


def test_response_format_json_object(oai: openai.OpenAI) -> None:
    out = oai.chat.completions.create(model="default", max_tokens=48, temperature=0, messages=CHAT,
                                      response_format={"type": "json_object"})
    assert isinstance(json.loads(out.choices[0].message.content), dict)
