"""The OpenAI protocol: request bodies, their mapping onto SamplingParams, and response pieces.

The models below type OpenAI's fields (a wrong type is a 400 naming the field); value ranges are
checked once, by SamplingParams. Any body field SamplingParams knows (SGLang's extras such as
`regex`, `ebnf`, `top_k`, `min_p`, `ignore_eos`, `stop_token_ids`, `logit_bias`, vLLM's `guided_*`) goes
to it, and vLLM's `structured_outputs` is mapped onto its grammar fields; OpenAI fields
that would change the answer but are not supported (UNSUPPORTED_FIELDS) are a 400; other unknown
fields are ignored and logged, as clients send many (`user`, `metadata`, ...).
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from radixgen.runtime.sampling_params import ALIASES, SamplingParams

from .errors import APIError

SAMPLING_NAMES = frozenset(f.name for f in dataclasses.fields(SamplingParams)) | frozenset(ALIASES)
# Fields of the protocol itself (or mapped by hand below), never handed to SamplingParams as they are.
PROTOCOL_FIELDS = frozenset({"model", "stream", "stream_options", "prompt", "messages", "echo", "logprobs",
                             "top_logprobs", "response_format", "tools", "tool_choice", "parallel_tool_calls",
                             "structured_outputs"})
# vLLM's `structured_outputs` keys -> SamplingParams' grammar fields
STRUCTURED_OUTPUTS = {"grammar": "ebnf", "regex": "regex", "json": "json_schema", "choice": "choices"}
COMPLETION_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions
# OpenAI fields that would change the answer and that this server cannot honour yet: a 400 naming
# the field, never a 200 that silently differs. The value given is refused unless it is the no-op.
UNSUPPORTED_FIELDS = {"best_of": lambda v: v in (None, 1), "functions": lambda v: not v,
                      "function_call": lambda v: v in (None, "none"), "suffix": lambda v: not v,
                      "audio": lambda v: v is None, "modalities": lambda v: v in (None, ["text"]),
                      "prediction": lambda v: v is None}


class OpenAIModel(BaseModel):
    model_config = ConfigDict(extra="allow")


class StreamOptions(OpenAIModel):
    include_usage: bool = False


class ResponseFormat(OpenAIModel):
    """OpenAI's formats, and SGLang's structural tag (`structures` + `triggers`, or `format`)."""
    type: Literal["text", "json_object", "json_schema", "structural_tag"]
    json_schema: dict[str, Any] | None = None


class CommonRequest(OpenAIModel):
    model: str | None = None
    n: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    user: str | None = None


class CompletionRequest(CommonRequest):
    prompt: str | list[str] | list[int] | list[list[int]]
    logprobs: int | None = None      # completions: how many top alternatives per token
    echo: bool = False


class ChatMessage(OpenAIModel):
    role: str
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[dict[str, Any]] | None = None  # an assistant's earlier calls
    tool_call_id: str | None = None                 # a tool result: the call it answers


class ChatCompletionRequest(CommonRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = None
    logprobs: bool = False           # chat: whether to return logprobs at all
    top_logprobs: int | None = None
    response_format: ResponseFormat | None = None
    tools: list[Any] | None = None      # checked by tools.parse_tools, which names what is wrong
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None


def sampling_kwargs(body: CommonRequest) -> tuple[dict[str, Any], list[str]]:
    """-> (keyword arguments for SamplingParams, the unknown fields that were ignored)."""
    given = body.model_dump(exclude_none=True)
    for name, is_noop in UNSUPPORTED_FIELDS.items():
        if name in given and not is_noop(given[name]):
            raise APIError(400, f"{name!r} is not supported by this server", param=name, code="unsupported_field")
    ignored = sorted(k for k in given if k not in SAMPLING_NAMES | PROTOCOL_FIELDS | {"user"})
    kwargs = {k: v for k, v in given.items() if k in SAMPLING_NAMES and k not in PROTOCOL_FIELDS}
    kwargs.update(structured_outputs_kwargs(given.get("structured_outputs")))
    return kwargs, ignored


def structured_outputs_kwargs(spec: Any) -> dict[str, Any]:
    """vLLM's `structured_outputs` ({"grammar": ...}, {"regex": ...}, {"json": ...}, {"choice": [...]},
    {"json_object": true}) -> SamplingParams' grammar field."""
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        raise APIError(400, "structured_outputs must be an object such as {\"grammar\": \"root ::= ...\"}",
                       param="structured_outputs")
    given = {k: v for k, v in spec.items() if v is not None and v is not False}
    unknown = sorted(given.keys() - STRUCTURED_OUTPUTS.keys() - {"json_object"})
    if unknown:
        raise APIError(400, f"structured_outputs.{unknown[0]} is not supported by this server (supported: "
                       f"{', '.join([*STRUCTURED_OUTPUTS, 'json_object'])})", param="structured_outputs")
    if len(given) != 1:
        raise APIError(400, "structured_outputs takes exactly one of " + ", ".join([*STRUCTURED_OUTPUTS, "json_object"]),
                       param="structured_outputs")
    key, value = next(iter(given.items()))
    if key == "json_object":
        return {"json_schema": json.dumps({"type": "object"})}
    return {STRUCTURED_OUTPUTS[key]: json.dumps(value) if key == "json" and isinstance(value, dict) else value}


def has_max_tokens(kwargs: dict[str, Any]) -> bool:
    return any(k in kwargs for k in ("max_tokens", "max_new_tokens", "max_completion_tokens"))


def chat_logprob_kwargs(body: ChatCompletionRequest) -> dict[str, Any]:
    if body.top_logprobs is not None and not body.logprobs:
        raise APIError(400, "top_logprobs requires logprobs: true", param="top_logprobs")
    if not body.logprobs:
        return {}
    return {"return_logprob": True, "top_logprobs_num": body.top_logprobs or 0}


def response_format_kwargs(fmt: ResponseFormat | None) -> dict[str, Any]:
    """response_format -> SamplingParams' json_schema (a JSON string, as SGLang passes it)."""
    if fmt is None or fmt.type == "text":
        return {}
    if fmt.type == "json_object":
        return {"json_schema": json.dumps({"type": "object"})}
    if fmt.type == "structural_tag":  # checked when compiled (constrained/structural_tag.py)
        return {"structural_tag": json.dumps(fmt.model_dump(exclude_none=True))}
    schema = (fmt.json_schema or {}).get("schema")
    if not isinstance(schema, dict):
        raise APIError(400, "response_format.json_schema.schema must be a JSON schema object",
                       param="response_format")
    return {"json_schema": json.dumps(schema)}


# ---- responses ----
def finish_reason(meta: dict[str, Any]) -> str | None:
    reason = meta["finish_reason"]
    return None if reason is None else reason["type"]


def matched_stop(meta: dict[str, Any]) -> Any:
    reason = meta["finish_reason"] or {}
    return reason.get("matched")


def abort_error(meta: dict[str, Any]) -> APIError | None:
    """An engine-side abort as an HTTP error: the client is owed a reason, not an empty choice."""
    reason = meta["finish_reason"] or {}
    if reason.get("type") != "abort":
        return None
    return APIError(int(reason.get("status_code", 500)), str(reason.get("message", "aborted")))


def usage(metas: list[dict[str, Any]], n: int) -> dict[str, Any]:
    """Token counts; a prompt sampled n times counts once (results are prompt-major)."""
    firsts = metas[::n]
    prompt = sum(m["prompt_tokens"] for m in firsts)
    completion = sum(m["completion_tokens"] for m in metas)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": sum(m["cached_tokens"] for m in firsts)}}


def _top(entries: list) -> list[dict[str, Any]]:
    return [{"token": t, "logprob": lp, "bytes": list(t.encode())} for lp, _, t in entries]


def chat_logprobs(meta: dict[str, Any]) -> dict[str, Any] | None:
    if "output_token_logprobs" not in meta:
        return None
    content = [{**_top([entry])[0], "top_logprobs": _top(top)}
               for entry, top in zip(meta["output_token_logprobs"], meta["output_top_logprobs"])]
    return {"content": content}


def completion_logprobs(meta: dict[str, Any], offset: int, with_prompt: bool) -> dict[str, Any] | None:
    """The legacy completions shape; `offset` is where this piece's text starts in the choice."""
    if "output_token_logprobs" not in meta:
        return None
    entries, tops = meta["output_token_logprobs"], meta["output_top_logprobs"]
    if with_prompt:
        entries, tops = meta.get("input_token_logprobs", []) + entries, meta.get("input_top_logprobs", []) + tops
    offsets = []
    for _, _, text in entries:
        offsets.append(offset)
        offset += len(text)
    return {"tokens": [t for _, _, t in entries], "token_logprobs": [lp for lp, _, _ in entries],
            "top_logprobs": [{t: lp for lp, _, t in top} or None for top in tops], "text_offset": offsets}


def envelope(kind: str, rid: str, created: int, model: str, choices: list[dict]) -> dict[str, Any]:
    return {"id": rid, "object": kind, "created": created, "model": model, "choices": choices}
