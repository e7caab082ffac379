"""What both APIs share: one call into the engine, aborted when the client leaves, and SSE streams.

The engine streams each request's new text only; clients of both APIs are served from a cumulative
view (`Stream`), and whatever ends a response early (a disconnect, a cancelled task, a server
shutting down) aborts the engine requests that are still running, so their KV is freed at once.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

from fastapi import Request
from starlette.responses import StreamingResponse

from radixgen.runtime.engine import Engine
from radixgen.runtime.request import sample_rid
from radixgen.runtime.sampling_params import SamplingParams

from .errors import APIError
from .metrics import ServerMetrics

log = logging.getLogger("radixgen.server")
DISCONNECT_POLL_S = 0.5   # how often a non-streaming request checks that its client is still there


@dataclass
class GenRequest:
    """One HTTP request's work for the engine: one or more prompts, one SamplingParams each."""
    prompt: str | list[str] | None
    input_ids: list[int] | list[list[int]] | None
    params: list[SamplingParams]
    rids: list[str]
    return_logprob: bool = False
    logprob_start_len: int | None = None
    top_logprobs_num: int | None = None
    route: str = ""
    arrival: float = field(default_factory=time.perf_counter)

    @property
    def expanded_rids(self) -> list[str]:
        """The engine's ids for the requests it makes, in its order: prompt-major, then sample.
        The samples of n > 1 are named by request.sample_rid."""
        return [r if p.n == 1 else sample_rid(r, j) for r, p in zip(self.rids, self.params) for j in range(p.n)]

    def engine_kwargs(self, stream: bool) -> dict[str, Any]:
        return dict(prompt=self.prompt, input_ids=self.input_ids, sampling_params=self.params, rid=self.rids,
                    return_logprob=self.return_logprob, logprob_start_len=self.logprob_start_len,
                    top_logprobs_num=self.top_logprobs_num, stream=stream)


def make_sampling_params(kwargs: dict[str, Any]) -> SamplingParams:
    """SamplingParams from request fields; every bad value becomes a 400 naming it."""
    try:
        return SamplingParams(**kwargs)
    except TypeError as exc:  # defensive: a wrongly typed value that validation did not name
        raise APIError(400, f"invalid sampling parameters {sorted(kwargs)}: {exc}") from exc


def log_finished(gen: GenRequest, meta: dict[str, Any]) -> None:
    reason = meta["finish_reason"] or {}
    log.info("request finished", extra={"fields": {
        "rid": meta["id"], "route": gen.route, "prompt_tokens": meta["prompt_tokens"],
        "completion_tokens": meta["completion_tokens"], "cached_tokens": meta["cached_tokens"],
        "finish": reason.get("type"), "e2e_latency_s": round(meta["e2e_latency"], 4)}})


def abort_all(engine: Engine, rids: list[str]) -> None:
    for rid in rids:
        engine.abort(rid)  # a no-op for a request that already finished


async def run_to_completion(engine: Engine, metrics: ServerMetrics, http_request: Request,
                            gen: GenRequest) -> list[dict[str, Any]]:
    """Non-streaming generation -> one output dict per engine request. Polls the connection, since
    nothing else would notice a client that hung up while its request waits or decodes."""
    task = asyncio.ensure_future(engine.async_generate(**gen.engine_kwargs(stream=False)))
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
            if not task.done() and await http_request.is_disconnected():
                raise APIError(499, "the client closed the connection")  # nginx's code; nobody reads it
        out = task.result()  # raises the engine's ValueError for bad input
    finally:
        if not task.done():
            task.cancel()
            abort_all(engine, gen.expanded_rids)
            metrics.finished.labels(reason="abort").inc(len(gen.expanded_rids))
    results = out if isinstance(out, list) else [out]
    for item in results:
        metrics.observe_finished(item["meta_info"])
        log_finished(gen, item["meta_info"])
    return results


@dataclass
class StreamChunk:
    index: int            # the choice's place in expanded_rids (OpenAI's `index`)
    text: str             # everything so far
    delta: str            # new since the last chunk of this index
    output_ids: list[int]  # everything so far
    meta: dict[str, Any]  # the engine's meta_info; logprobs in it cover the new tokens only
    finished: bool


class Stream:
    """Cumulative view over the engine's per-token delta chunks for every request of one call."""

    def __init__(self, engine: Engine, metrics: ServerMetrics, gen: GenRequest, chunks: AsyncIterator[dict]):
        self.engine, self.metrics, self.gen, self.chunks = engine, metrics, gen, chunks
        rids = gen.expanded_rids
        self.index = {rid: i for i, rid in enumerate(rids)}
        self.texts, self.ids = [""] * len(rids), [[] for _ in rids]
        self.first_at: list[float | None] = [None] * len(rids)
        self.unfinished = set(rids)

    @classmethod
    async def open(cls, engine: Engine, metrics: ServerMetrics, gen: GenRequest) -> "Stream":
        """Submits the requests; raises ValueError (-> 400) before any byte of the response is sent."""
        return cls(engine, metrics, gen, await engine.async_generate(**gen.engine_kwargs(stream=True)))

    async def __aiter__(self) -> AsyncIterator[StreamChunk]:
        async for item in self.chunks:
            meta = item["meta_info"]
            i, now = self.index[meta["id"]], time.perf_counter()
            self.texts[i] += item["text"]
            self.ids[i].extend(item["output_ids"])  # chunks are serialized before the next one comes
            if self.first_at[i] is None and item["output_ids"]:
                self.first_at[i] = now
            finished = meta["finish_reason"] is not None
            if finished:
                self._observe(i, meta, now)
            yield StreamChunk(i, self.texts[i], item["text"], self.ids[i], meta, finished)

    def _observe(self, i: int, meta: dict[str, Any], now: float) -> None:
        self.unfinished.discard(meta["id"])
        self.metrics.observe_finished(meta)
        first = self.first_at[i]
        if first is not None:
            self.metrics.observe_stream(first - self.gen.arrival, now - first, meta["completion_tokens"])
        log_finished(self.gen, meta)

    async def close(self) -> None:
        """Ends the engine side: aborts what still runs (client gone, task cancelled, shutdown)."""
        if self.unfinished:
            abort_all(self.engine, sorted(self.unfinished))
            self.metrics.finished.labels(reason="abort").inc(len(self.unfinished))
            log.info("stream closed early", extra={"fields": {"route": self.gen.route,
                                                              "aborted": sorted(self.unfinished)}})
            self.unfinished.clear()
        await self.chunks.aclose()


def sse(obj: Any) -> bytes:
    """One server-sent event: `data: {json}` and a blank line."""
    payload = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)
    return f"data: {payload}\n\n".encode()


SSE_DONE = sse("[DONE]")


class SSEResponse(StreamingResponse):
    """A StreamingResponse that always runs `on_close`: Starlette cancels the body when the client
    disconnects, possibly before the body generator has started, when its own `finally` cannot run."""

    def __init__(self, body: AsyncIterator[bytes], on_close: Callable[[], Any]):
        # no-cache / no proxy buffering: each token must reach the client when it is made
        super().__init__(body, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.on_close = on_close

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.on_close()
