"""OpenAI routes: /v1/models, /v1/completions, /v1/chat/completions (plain and SSE streaming)."""
from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from jinja2 import TemplateError

from radixgen.runtime.sampling_params import GRAMMAR_KINDS

from . import openai_protocol as proto
from . import tool_calls, tools
from .errors import APIError, json_error_event
from .generation import (SSE_DONE, GenRequest, SSEResponse, Stream, StreamChunk, make_sampling_params,
                         run_to_completion, sse)
from .state import ServerState, get_state

log = logging.getLogger("radixgen.server")
router = APIRouter(prefix="/v1")
CHAT, COMPLETIONS = "/v1/chat/completions", "/v1/completions"
PieceFn = Callable[[StreamChunk], Any]  # one engine chunk -> an SSE choice, a list of them, or None


@dataclass
class Call:
    """What the two generation routes share once the body is parsed."""
    state: ServerState
    gen: GenRequest
    kind: str          # "text_completion" or "chat.completion"
    rid: str
    n: int
    include_usage: bool
    created: int

    def envelope(self, choices: list[dict], chunk: bool = False) -> dict[str, Any]:
        kind = self.kind + (".chunk" if chunk and self.kind == "chat.completion" else "")
        return proto.envelope(kind, self.rid, self.created, self.state.model_name, choices)


def _model_card(state: ServerState) -> dict[str, Any]:
    return {"id": state.model_name, "object": "model", "created": state.started_at, "owned_by": "radixgen",
            "root": state.engine.model_path, "max_model_len": state.context_length}


@router.get("/models")
async def list_models(request: Request) -> dict[str, Any]:
    return {"object": "list", "data": [_model_card(get_state(request))]}


@router.get("/models/{model_id:path}")
async def retrieve_model(model_id: str, request: Request) -> dict[str, Any]:
    state = get_state(request)
    state.check_model(model_id)
    return _model_card(state)


def _prepare(state: ServerState, body: proto.CommonRequest, route: str) -> dict[str, Any]:
    state.check_model(body.model)
    kwargs, ignored = proto.sampling_kwargs(body)
    if ignored:
        log.info("ignored unknown fields", extra={"fields": {"route": route, "fields": ignored}})
    return kwargs


@router.post("/completions")
async def completions(body: proto.CompletionRequest, request: Request) -> Any:
    state = get_state(request)
    if body.model_extra and body.model_extra.keys() & {"tools", "tool_choice"}:
        raise APIError(400, "tools are supported on /v1/chat/completions only", param="tools")
    kwargs = _prepare(state, body, COMPLETIONS)
    if body.logprobs is not None:
        kwargs.update(return_logprob=True, top_logprobs_num=body.logprobs)
        if body.echo:
            kwargs["logprob_start_len"] = 0  # echo with logprobs: the prompt's tokens are scored too
    if not proto.has_max_tokens(kwargs):
        kwargs["max_new_tokens"] = proto.COMPLETION_DEFAULT_MAX_TOKENS
    prompt = body.prompt
    is_ids = bool(prompt) and isinstance(prompt, list) and not isinstance(prompt[0], str)
    single = isinstance(prompt, str) or (is_ids and isinstance(prompt[0], int))
    num = 1 if single else len(prompt)
    if num == 0:
        raise APIError(400, "prompt must not be empty", param="prompt")
    call = _call(state, body, kwargs, single, num, COMPLETIONS, text=None if is_ids else prompt,
                 ids=prompt if is_ids else None)
    prompts = [prompt] if single else list(prompt)
    echoes = [_prompt_text(state, p) if body.echo else "" for p in prompts]
    with_prompt_lp = body.echo and body.logprobs is not None
    if body.stream:
        return await _stream(call, _completion_piece(call, echoes, with_prompt_lp))
    results = await _complete(call, request)
    choices = [{"index": i, "text": echoes[i // call.n] + item["text"],
                "finish_reason": proto.finish_reason(item["meta_info"]),
                "matched_stop": proto.matched_stop(item["meta_info"]),
                "logprobs": proto.completion_logprobs(item["meta_info"], 0, with_prompt_lp)}
               for i, item in enumerate(results)]
    return _respond(call, choices, results)


def _prompt_text(state: ServerState, prompt: str | list[int]) -> str:
    return prompt if isinstance(prompt, str) else state.engine.tokenizer.decode(prompt)


def _completion_piece(call: Call, echoes: list[str], with_prompt_lp: bool) -> PieceFn:
    offsets: dict[int, int] = {}  # per choice: how much text has gone out, for text_offset

    def piece(chunk: StreamChunk) -> dict[str, Any] | None:
        first = chunk.index not in offsets
        text = (echoes[chunk.index // call.n] if first else "") + chunk.delta
        start = offsets.get(chunk.index, 0)
        offsets[chunk.index] = start + len(text)
        return {"index": chunk.index, "text": text, "finish_reason": proto.finish_reason(chunk.meta),
                "logprobs": proto.completion_logprobs(chunk.meta, start, with_prompt_lp and first)}
    return piece


@router.post("/chat/completions")
async def chat_completions(body: proto.ChatCompletionRequest, request: Request) -> Any:
    state = get_state(request)
    kwargs = _prepare(state, body, CHAT)
    kwargs.update(proto.chat_logprob_kwargs(body))
    kwargs.update(proto.response_format_kwargs(body.response_format))
    tool_req = tools.parse_tools(body.tools, body.tool_choice, body.parallel_tool_calls)
    tag = tools.tool_structural_tag(tool_req) if tool_req is not None else None
    if tag is not None:
        if any(k in kwargs for k in GRAMMAR_KINDS):
            raise APIError(400, "tools cannot be combined with response_format or another grammar "
                           "(regex, json_schema, ...) unless tool_choice is 'none'", param="tools")
        kwargs["structural_tag"] = json.dumps(tag)
    if "structural_tag" in kwargs:
        await _check_grammar(state, kwargs["structural_tag"], "tools" if tag is not None else "response_format")
    input_ids = _apply_template(state, body.messages, tool_req)
    if not proto.has_max_tokens(kwargs):  # OpenAI's chat default: as long as the context allows
        kwargs["max_new_tokens"] = max(1, state.context_length - len(input_ids))
    call = _call(state, body, kwargs, True, 1, CHAT, text=None, ids=input_ids)
    with_tools = tool_req is not None and tool_req.active
    if body.stream:
        return await _stream(call, tool_calls.stream_piece() if with_tools else _chat_piece)
    results = await _complete(call, request)
    choices = [{"index": i, "message": {"role": "assistant", "content": item["text"]},
                "logprobs": proto.chat_logprobs(item["meta_info"]),
                "finish_reason": proto.finish_reason(item["meta_info"]),
                "matched_stop": proto.matched_stop(item["meta_info"])} for i, item in enumerate(results)]
    if with_tools:
        choices = [tool_calls.with_tool_calls(c) for c in choices]
    return _respond(call, choices, results)


async def _check_grammar(state: ServerState, spec: str, param: str) -> None:
    """Compile the request's structural tag before answering, so a bad one is a 400 (also when
    streaming); the engine then finds it compiled."""
    try:
        await asyncio.wrap_future(state.engine.compile_grammar("structural_tag", spec))
    except ValueError as exc:
        raise APIError(400, f"invalid {param}: {exc}", param=param) from exc


def _apply_template(state: ServerState, messages: list[proto.ChatMessage],
                    tool_req: tools.ToolRequest | None) -> list[int]:
    plain = []
    for i, m in enumerate(messages):
        msg = m.model_dump(exclude_none=True)
        if isinstance(m.content, list):  # content parts: only text is supported by a text-only model
            if any(part.get("type") != "text" for part in m.content):
                raise APIError(400, "only text content parts are supported", param=f"messages.{i}.content")
            msg["content"] = "".join(str(part.get("text", "")) for part in m.content)
        plain.append(msg)
    native = tools.template_has_tools(getattr(state.engine.tokenizer, "chat_template", None))
    plain, tool_defs = tools.render_messages(plain, tool_req, native)
    try:
        return state.engine.apply_chat_template(plain, tools=tool_defs)
    except TemplateError as exc:  # templates raise for roles or orders they do not allow
        raise APIError(400, f"the chat template refused the messages: {exc}", param="messages") from exc


def _chat_piece(chunk: StreamChunk) -> dict[str, Any] | None:
    logprobs = proto.chat_logprobs(chunk.meta)
    if not chunk.delta and not chunk.finished and not (logprobs and logprobs["content"]):
        return None  # a token that ends inside a character: nothing to show yet
    return {"index": chunk.index, "delta": {"content": chunk.delta} if chunk.delta else {},
            "logprobs": logprobs, "finish_reason": proto.finish_reason(chunk.meta)}


def _call(state: ServerState, body: proto.CommonRequest, kwargs: dict[str, Any], single: bool, num: int,
          route: str, text: Any, ids: Any) -> Call:
    """`single`: one prompt given as such (not a list of one), which the engine answers unlisted."""
    params = make_sampling_params(kwargs)
    base = uuid.uuid4().hex
    rids = [base] if single else [f"{base}-{i}" for i in range(num)]
    gen = GenRequest(text, ids, [params] * num, rids, route=route)
    kind, prefix = ("chat.completion", "chatcmpl") if route == CHAT else ("text_completion", "cmpl")
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return Call(state, gen, kind, f"{prefix}-{base}", params.n, include_usage, int(time.time()))


def _respond(call: Call, choices: list[dict], results: list[dict]) -> JSONResponse:
    # a JSONResponse skips FastAPI's jsonable_encoder walk over every logprob entry
    usage = proto.usage([r["meta_info"] for r in results], call.n)
    return JSONResponse({**call.envelope(choices), "usage": usage})


async def _complete(call: Call, request: Request) -> list[dict[str, Any]]:
    results = await run_to_completion(call.state.engine, call.state.metrics, request, call.gen)
    for item in results:
        error = proto.abort_error(item["meta_info"])
        if error is not None:
            raise error
    return results


async def _stream(call: Call, piece: PieceFn) -> SSEResponse:
    stream = await Stream.open(call.state.engine, call.state.metrics, call.gen)
    return SSEResponse(_events(call, stream, piece), on_close=stream.close)


async def _events(call: Call, stream: Stream, piece: PieceFn) -> AsyncIterator[bytes]:
    if call.kind == "chat.completion":  # the role comes first, once per choice, as OpenAI sends it
        roles = [{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                  "finish_reason": None} for i in range(len(call.gen.expanded_rids))]
        yield sse(call.envelope(roles, chunk=True))
    finals: dict[int, dict[str, Any]] = {}
    async for chunk in stream:
        error = proto.abort_error(chunk.meta) if chunk.finished else None
        if error is not None:  # the 200 is already out: report in-band, as vLLM and SGLang do
            yield sse(json_error_event(error.status, error.message))
            continue
        if chunk.finished:
            finals[chunk.index] = chunk.meta
        choices = piece(chunk)  # one choice, several (tool call deltas) or none
        for choice in choices if isinstance(choices, list) else [choices] if choices is not None else []:
            yield sse(call.envelope([choice], chunk=True))
    if call.include_usage and len(finals) == len(call.gen.expanded_rids):
        metas = [finals[i] for i in sorted(finals)]
        yield sse({**call.envelope([], chunk=True), "usage": proto.usage(metas, call.n)})
    yield SSE_DONE
