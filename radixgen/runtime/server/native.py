"""SGLang's native API: /generate and the operational routes its `RuntimeEndpoint` and tools call.

The contract is SGLang's: a dict (or a list for a batch) of `text`, `output_ids` and `meta_info`;
streaming sends SSE `data: {json}` events whose `text` is cumulative and whose logprobs cover only
the new tokens, then `data: [DONE]`.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from importlib.metadata import version
from typing import Any, AsyncIterator

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

from radixgen.runtime.sampling_params import SamplingParams

from .errors import APIError, error_response
from .generation import (SSE_DONE, GenRequest, SSEResponse, Stream, make_sampling_params, run_to_completion,
                         sse)
from .state import ServerState, get_state

log = logging.getLogger("radixgen.server")
router = APIRouter()
LOGPROB_KEYS = ("input_token_logprobs", "output_token_logprobs", "input_top_logprobs", "output_top_logprobs")
HEALTH_GENERATE_TIMEOUT_S = 30.0


class GenerateRequest(BaseModel):
    """SGLang's GenerateReqInput, the fields we serve. Unknown fields are allowed (and logged)."""
    model_config = ConfigDict(extra="allow")
    text: str | list[str] | None = None
    input_ids: list[int] | list[list[int]] | None = None
    sampling_params: dict[str, Any] | list[dict[str, Any]] | None = None
    stream: bool = False
    return_logprob: bool = False
    logprob_start_len: int | None = None
    top_logprobs_num: int | None = None
    return_text_in_logprobs: bool = False
    rid: str | list[str] | None = None


def log_ignored(route: str, body: BaseModel) -> None:
    if body.model_extra:
        log.info("ignored unknown fields", extra={"fields": {"route": route, "fields": sorted(body.model_extra)}})


def make_params(given: dict[str, Any] | None) -> SamplingParams:
    """Keys set to null or [] are dropped first: SGLang's own frontend always sends some we lack
    (`stop_regex: []`), and null or an empty list means "the default" for every parameter anyway.
    The rest goes to SamplingParams, which refuses (400) unknown names and out-of-range values."""
    return make_sampling_params({k: v for k, v in (given or {}).items() if v is not None and v != []})


def to_gen_request(body: GenerateRequest) -> tuple[GenRequest, bool]:
    """-> (the engine work, whether the prompt was a single one rather than a batch)."""
    if (body.text is None) == (body.input_ids is None):
        raise APIError(400, "give exactly one of text and input_ids", param="text")
    ids = body.input_ids
    single = isinstance(body.text, str) or (ids is not None and (not ids or isinstance(ids[0], int)))
    num = 1 if single else len(body.text if body.text is not None else ids)
    if num == 0:
        raise APIError(400, "the batch of prompts is empty", param="text")
    given = body.sampling_params
    params = [make_params(p) for p in given] if isinstance(given, list) else [make_params(given)] * num
    if len(params) != num:
        raise APIError(400, f"got {len(params)} sampling_params for {num} prompts", param="sampling_params")
    return GenRequest(body.text, ids, params, _rids(body.rid, num, single), body.return_logprob,
                      body.logprob_start_len, body.top_logprobs_num, route="/generate"), single


def _rids(rid: str | list[str] | None, num: int, single: bool) -> list[str]:
    if isinstance(rid, list):
        if len(rid) != num or len(set(rid)) != num:
            raise APIError(400, f"rid must hold {num} distinct ids, one per prompt", param="rid")
        return rid
    base = rid or uuid.uuid4().hex
    return [base] if single else [f"{base}-{i}" for i in range(num)]


def strip_logprob_text(meta: dict[str, Any], keep_text: bool) -> dict[str, Any]:
    """SGLang leaves the token text out of logprob entries (null) unless return_text_in_logprobs."""
    if keep_text:
        return meta
    drop = lambda entries: [[lp, tok, None] for lp, tok, _ in entries]  # noqa: E731
    for key in LOGPROB_KEYS:
        if key in meta:
            meta[key] = drop(meta[key]) if key.endswith("token_logprobs") else [drop(t) for t in meta[key]]
    return meta


@router.post("/generate")
async def generate(body: GenerateRequest, request: Request) -> Any:
    state = get_state(request)
    log_ignored("/generate", body)
    gen, single = to_gen_request(body)
    if body.stream:
        stream = await Stream.open(state.engine, state.metrics, gen)
        return SSEResponse(_stream_events(stream, single and len(gen.expanded_rids) == 1,
                                          body.return_text_in_logprobs), on_close=stream.close)
    results = await run_to_completion(state.engine, state.metrics, request, gen)
    for item in results:
        strip_logprob_text(item["meta_info"], body.return_text_in_logprobs)
    # a JSONResponse skips FastAPI's jsonable_encoder walk over every logprob entry
    return JSONResponse(results[0] if single and len(results) == 1 else results)


async def _stream_events(stream: Stream, one: bool, keep_text: bool) -> AsyncIterator[bytes]:
    async for chunk in stream:
        out: dict[str, Any] = {"text": chunk.text, "output_ids": chunk.output_ids,
                               "meta_info": strip_logprob_text(chunk.meta, keep_text)}
        if not one:
            out["index"] = chunk.index  # which prompt/sample of the batch this event belongs to
        yield sse(out)
    yield SSE_DONE


class AbortRequest(BaseModel):
    rid: str


@router.post("/abort_request")
async def abort_request(body: AbortRequest, request: Request) -> dict[str, Any]:
    get_state(request).engine.abort(body.rid)
    return {"success": True}


class ConcateAndAppend(BaseModel):
    src_rids: list[str]
    dst_rid: str


@router.post("/concate_and_append_request")
async def concate_and_append(body: ConcateAndAppend) -> dict[str, Any]:
    """SGLang's frontend calls this on `join(mode="concate_and_append")` to splice the forks' KV
    into the parent's without recomputing it (parallel encoding); SGLang's own server no longer
    serves it. The frontend appends the forks' text to the parent itself, so the answer only
    decides whether its program goes on: it does, and the parent's next request prefills that text
    (its shared prefix from the radix cache). The splice itself is not done: same text, more prefill."""
    return {"success": True}


@router.get("/health")
async def health(request: Request) -> Response:
    """Answers at once, without waiting for the engine: 200 while its loop runs and goes round,
    503 once it stopped or has not gone round for --health-stall-s (a load balancer then notices)."""
    state = get_state(request)
    problem = state.engine.health(state.config.health_stall_s)
    return Response(status_code=200) if problem is None else error_response(503, problem, code="engine_unavailable")


@router.get("/health_generate")
async def health_generate(request: Request) -> Response:
    """Healthy only if the engine really generates a token (SGLang's check)."""
    state, rid = get_state(request), f"health-{uuid.uuid4().hex}"
    try:
        await asyncio.wait_for(state.engine.async_generate(input_ids=[0], rid=rid, sampling_params={
            "max_new_tokens": 1, "temperature": 0}), timeout=HEALTH_GENERATE_TIMEOUT_S)
    except (asyncio.TimeoutError, ValueError) as exc:
        state.engine.abort(rid)
        return error_response(503, f"the engine did not generate: {type(exc).__name__}: {exc}")
    return Response(status_code=200)


def model_info(state: ServerState) -> dict[str, Any]:
    return {"model_path": state.engine.model_path, "tokenizer_path": state.engine.model_path,
            "served_model_name": state.model_name, "is_generation": True,
            "context_length": state.context_length, "preferred_sampling_params": None}


@router.get("/get_model_info")
@router.get("/model_info")
async def get_model_info(request: Request) -> dict[str, Any]:
    return model_info(get_state(request))


@router.get("/get_server_info")
@router.get("/server_info")
async def get_server_info(request: Request) -> dict[str, Any]:
    state = get_state(request)
    return {**dataclasses.asdict(state.engine.config), **state.config.public(), **model_info(state),
            "version": version("radixgen"), "stats": await state.stats()}


@router.api_route("/flush_cache", methods=["GET", "POST"])
async def flush_cache(request: Request) -> JSONResponse:
    if await run_in_threadpool(get_state(request).engine.flush_cache):
        return JSONResponse({"success": True, "message": "Cache flushed."})
    return error_response(400, "cache not flushed: requests are running or waiting; retry when idle")


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    body = await run_in_threadpool(get_state(request).metrics.render)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
