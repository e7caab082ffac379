"""The OpenAI protocol mapping, without a server."""
from __future__ import annotations

import json

import pytest

from radixgen.runtime.server import openai_protocol as proto
from radixgen.runtime.server.errors import APIError


def chat(**fields) -> proto.ChatCompletionRequest:
    return proto.ChatCompletionRequest(messages=[{"role": "user", "content": "hi"}], **fields)


def test_sampling_fields_pass_through_and_unknown_ones_are_reported() -> None:
    kwargs, ignored = proto.sampling_kwargs(chat(max_tokens=5, temperature=0.5, top_k=3, regex="a+",
                                                 logit_bias={"1": 1}, model="m", stream=True, foo=2))
    assert kwargs == {"max_tokens": 5, "temperature": 0.5, "top_k": 3, "regex": "a+", "logit_bias": {"1": 1}}
    assert ignored == ["foo"]


def test_response_format() -> None:
    assert proto.response_format_kwargs(None) == {}
    assert proto.response_format_kwargs(proto.ResponseFormat(type="text")) == {}
    obj = proto.response_format_kwargs(proto.ResponseFormat(type="json_object"))
    assert json.loads(obj["json_schema"]) == {"type": "object"}
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    given = proto.ResponseFormat(type="json_schema", json_schema={"name": "x", "schema": schema})
    assert json.loads(proto.response_format_kwargs(given)["json_schema"]) == schema
    with pytest.raises(APIError):
        proto.response_format_kwargs(proto.ResponseFormat(type="json_schema", json_schema={"name": "x"}))


def test_chat_logprobs_need_logprobs_true() -> None:
    assert proto.chat_logprob_kwargs(chat(logprobs=True, top_logprobs=2)) == {"return_logprob": True,
                                                                              "top_logprobs_num": 2}
    assert proto.chat_logprob_kwargs(chat()) == {}
    with pytest.raises(APIError):
        proto.chat_logprob_kwargs(chat(top_logprobs=2))


def test_usage_counts_each_prompt_once() -> None:
    metas = [{"prompt_tokens": 10, "completion_tokens": c, "cached_tokens": 4} for c in (1, 2, 3, 4)]
    usage = proto.usage(metas, n=2)  # two prompts, two samples each
    assert usage == {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30,
                     "prompt_tokens_details": {"cached_tokens": 8}}


def test_abort_maps_to_a_status() -> None:
    """The status comes from the abort's status_code, never from its message text."""
    from radixgen.runtime.request import abort_reason
    assert proto.abort_error({"finish_reason": {"type": "stop"}}) is None
    for status in (400, 499, 500, 503):
        error = proto.abort_error({"finish_reason": abort_reason("the engine is shutting down", status)})
        assert (error.status, error.message) == (status, "the engine is shutting down")
    assert proto.abort_error({"finish_reason": {"type": "abort", "message": "?"}}).status == 500


def test_completion_logprobs_offsets() -> None:
    meta = {"output_token_logprobs": [[-0.5, 1, "ab"], [-1.0, 2, "c"]],
            "output_top_logprobs": [[[-0.5, 1, "ab"]], []]}
    out = proto.completion_logprobs(meta, offset=3, with_prompt=False)
    assert out == {"tokens": ["ab", "c"], "token_logprobs": [-0.5, -1.0],
                   "top_logprobs": [{"ab": -0.5}, None], "text_offset": [3, 5]}
