"""Engine: the offline API (SGLang's style). A background thread runs EngineCore; callers talk to
it through a queue, so sync, streaming and async callers (and the HTTP server) share one engine."""
from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import queue
import threading
import time
import weakref
from concurrent.futures import Future
from typing import Any, AsyncIterator, Callable, Iterator

from .config import EngineConfig
from .engine_core import EngineCore
from .errors import EngineOverloadedError, EngineUnavailableError, RankFailedError
from .outputs import make_output, single_or_raise
from .request import Req
from .request_builder import Prompt, build_reqs, logprob_args, model_sampling_defaults

log = logging.getLogger("radixgen")
_DONE = object()
LIVENESS_POLL_S = 0.5  # how often a waiting caller checks that the engine thread is still alive


class Engine:
    """`Engine(model=None, **config)`: model is a HF directory, a .gguf file, or None (bundled SmolLM2)."""

    def __init__(self, model: str | None = None, **kwargs: Any):
        self.config = EngineConfig.from_kwargs(model=model, **kwargs)
        self._inbox: queue.Queue = queue.Queue()
        self._stopped = threading.Event()
        self._dead: str | None = None       # why the engine loop stopped, if it did
        self.heartbeat = time.monotonic()    # when the loop last went round (health)
        self._ids = itertools.count()
        started: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._loop, args=(started.put,), name="radixgen-engine",
                                        daemon=True)
        self._thread.start()
        weakref.finalize(self, _stop_thread, self._stopped, self._thread)  # also runs at exit
        core = started.get()
        if isinstance(core, BaseException):
            self._stopped.set()
            raise core
        self.core: EngineCore = core
        self.tokenizer = self.core.tokenizer
        self.model_path = str(self.core.runner.model_dir)
        # the model's recommended sampling, for requests that leave it unset (sampling_defaults="model")
        self.sampling_defaults = (model_sampling_defaults(self.core.runner.generation_config)
                                  if self.config.sampling_defaults == "model" else {})

    # ---- the engine thread ----
    def _loop(self, started: Callable[[Any], None]) -> None:
        # The model is loaded (and its kernels warmed up) here, not in the caller's thread: a
        # second thread running OpenMP work gives libgomp more busy threads than cores, and it
        # then stops spinning between parallel regions; each small op paid a futex wake-up and a
        # decode step ran ~50% slower (measured: 64 seed requests 5.5 s -> 8.1 s).
        try:
            self.core = EngineCore(self.config)
        except BaseException as exc:  # noqa: BLE001 - handed to the constructor, which raises it
            started(exc)
            return
        # Everything loaded so far (torch, transformers, the tokenizer: millions of objects) lives as
        # long as the engine: out of the collector's sight, its full collections stop walking it
        # (they were ~6% of a batch-1 decode step; SGLang freezes likewise).
        gc.collect()
        gc.freeze()
        started(self.core)
        try:
            self._run()
        except BaseException as exc:  # noqa: BLE001 - recorded; every caller then gets a 503
            self._dead = f"{type(exc).__name__}: {exc}"
            log.critical("the engine loop stopped", exc_info=True)
            self._fail_everyone()
        finally:
            self.core.close()  # the grammar compiler's threads and child processes, the tp ranks

    def _run(self) -> None:
        idle = True
        while not self._stopped.is_set():
            self.heartbeat = time.monotonic()
            try:
                self._drain(block=idle)
                idle = not self.core.step()  # also idle while work waits on a grammar compile
            except RankFailedError:  # a tensor-parallel rank is gone: nothing to recover, the loop stops
                raise
            except Exception as exc:  # a bug must not kill the server: blame one request, keep serving
                log.exception("engine step failed")
                self.core.recover(f"internal error: {type(exc).__name__}: {exc}")
                idle = False

    def _fail_everyone(self) -> None:
        """The loop is gone: answer whatever waits, so no caller blocks (best effort)."""
        error = EngineUnavailableError(f"the engine stopped: {self._dead}")
        try:
            self.core.fail_all(str(error))
        except BaseException:  # noqa: BLE001 - the callers' own waits time out on a dead thread
            log.exception("could not end the requests in flight")
        while True:
            try:
                _, _, reply = self._inbox.get_nowait()
            except queue.Empty:
                return
            if reply is not None:
                reply(error)

    def _drain(self, block: bool) -> None:
        try:
            item = self._inbox.get(timeout=0.05) if block else self._inbox.get_nowait()
        except queue.Empty:
            return
        while True:
            self._handle(item)
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return

    def _handle(self, item: tuple) -> None:
        kind, payload, reply = item
        try:
            if kind == "add":
                self.core.add_requests(payload)
                result: Any = None
            elif kind == "abort":
                result = self.core.abort(payload)
            else:  # "call": run a function on the engine thread
                result = payload(self.core)
        except (ValueError, EngineOverloadedError) as exc:
            result = exc
        except Exception as exc:  # noqa: BLE001 - a bug while handling one message: that caller's error
            log.exception("engine message %r failed", kind)
            result = RuntimeError(f"internal error: {type(exc).__name__}: {exc}")
        if reply is not None:
            reply(result)

    def _call(self, fn: Callable[[EngineCore], Any]) -> Any:
        done: queue.Queue = queue.Queue()
        self._inbox.put(("call", fn, done.put))
        result = self._wait(done)
        if isinstance(result, Exception):
            raise result
        return result

    def _check_alive(self) -> None:
        if self._dead is not None or not self._thread.is_alive():
            raise EngineUnavailableError(f"the engine is not running ({self._dead or 'shut down'})")

    def _wait(self, box: queue.Queue) -> Any:
        """box.get(), but raise EngineUnavailableError instead of blocking on a dead engine thread."""
        while True:
            try:
                return box.get(timeout=LIVENESS_POLL_S)
            except queue.Empty:
                self._check_alive()

    async def _await(self, box: asyncio.Queue) -> Any:
        if not box.empty():  # the common case while streaming: no wait_for task per chunk
            return box.get_nowait()
        while True:
            try:
                return await asyncio.wait_for(box.get(), LIVENESS_POLL_S)
            except asyncio.TimeoutError:
                self._check_alive()

    def health(self, stall_s: float) -> str | None:
        """None while the loop runs and has gone round within `stall_s` seconds; else why not."""
        if self._dead is not None or not self._thread.is_alive():
            return f"the engine is not running ({self._dead or 'shut down'})"
        late = time.monotonic() - self.heartbeat
        return f"the engine loop has not gone round for {late:.0f} s" if late > stall_s else None

    # ---- building requests ----
    def _make_reqs(self, prompt: Prompt, input_ids: Any, sampling_params: Any, stream: bool,
                   sink: Callable[[Req], None], extra: dict[str, Any],
                   rid: str | list[str] | None = None) -> tuple[list[Req], bool]:
        if self._stopped.is_set() or self._dead is not None:
            raise EngineUnavailableError(f"the engine is not running ({self._dead or 'shut down'})")
        return build_reqs(self.tokenizer, prompt, input_ids, sampling_params, stream, sink, extra, rid, self._ids,
                          self.sampling_defaults)

    def submit(self, reqs: list[Req]) -> None:
        """Queue built requests; raises the first validation error (then none of them runs)."""
        done: queue.Queue = queue.Queue()
        self._inbox.put(("add", reqs, done.put))
        err = self._wait(done)
        if err is not None:
            for req in reqs:
                self.abort(req.rid)
            raise err

    def abort(self, rid: str) -> None:
        self._inbox.put(("abort", rid, None))

    def abort_waiting(self, message: str) -> None:
        """End every request still waiting to start with a 503 (`message`); never blocks (it may run
        inside a signal handler)."""
        self._inbox.put(("call", lambda core: core.abort_waiting(message), None))

    # ---- public API ----
    def generate(self, prompt: Prompt = None, sampling_params: Any = None, input_ids: Any = None,
                 return_logprob: bool = False, logprob_start_len: int | None = None,
                 top_logprobs_num: int | None = None, stream: bool = False,
                 rid: str | list[str] | None = None) -> Any:
        """One prompt -> a dict; a list -> a list of dicts (n > 1 expands in place).
        stream=True -> an iterator of dicts whose `text` / `output_ids` hold the new part only."""
        args = (prompt, sampling_params, input_ids, return_logprob, logprob_start_len, top_logprobs_num, rid)
        if stream:
            reqs, out, _ = self._start(*args, stream=True)
            return self._stream(reqs, out)
        results, single = {}, False
        for i, item, single in self._completed(*args):
            results[i] = item
        ordered = [results[i] for i in range(len(results))]
        return single_or_raise(ordered[0]) if single else ordered

    def as_completed(self, prompt: Prompt = None, sampling_params: Any = None, input_ids: Any = None,
                     return_logprob: bool = False, logprob_start_len: int | None = None,
                     top_logprobs_num: int | None = None) -> Iterator[tuple[int, dict]]:
        """Yields (index, output) as each request finishes; index runs over the expanded requests."""
        for i, item, _ in self._completed(prompt, sampling_params, input_ids, return_logprob,
                                          logprob_start_len, top_logprobs_num, None):
            yield i, item

    def _start(self, prompt: Prompt, sampling_params: Any, input_ids: Any, return_logprob: bool,
               logprob_start_len: int | None, top_logprobs_num: int | None, rid: Any,
               stream: bool) -> tuple[list[Req], queue.Queue, bool]:
        out: queue.Queue = queue.Queue()
        extra = logprob_args(return_logprob, logprob_start_len, top_logprobs_num)
        reqs, single = self._make_reqs(prompt, input_ids, sampling_params, stream,
                                       lambda r: out.put(make_output(r, self.tokenizer, stream)), extra, rid)
        self.submit(reqs)
        return reqs, out, single

    def _completed(self, *args: Any) -> Iterator[tuple[int, dict, bool]]:
        reqs, out, single = self._start(*args, stream=False)
        index = {r.rid: i for i, r in enumerate(reqs)}
        for _ in reqs:
            item = self._wait(out)
            yield index[item["meta_info"]["id"]], item, single

    def _stream(self, reqs: list[Req], out: queue.Queue) -> Iterator[dict]:
        left = {r.rid for r in reqs}
        try:
            while left:
                item = self._wait(out)
                if item["meta_info"]["finish_reason"] is not None:
                    left.discard(item["meta_info"]["id"])
                yield item
        finally:
            for rid in left:  # the consumer stopped early: free the requests' KV
                self.abort(rid)

    async def async_generate(self, prompt: Prompt = None, sampling_params: Any = None, input_ids: Any = None,
                             return_logprob: bool = False, logprob_start_len: int | None = None,
                             top_logprobs_num: int | None = None, stream: bool = False,
                             rid: str | list[str] | None = None) -> Any:
        """Like `generate`; with stream=True returns an async iterator."""
        loop = asyncio.get_running_loop()
        out: asyncio.Queue = asyncio.Queue()
        sink = lambda r: loop.call_soon_threadsafe(out.put_nowait, make_output(r, self.tokenizer, stream))  # noqa: E731
        extra = logprob_args(return_logprob, logprob_start_len, top_logprobs_num)
        reqs, single = self._make_reqs(prompt, input_ids, sampling_params, stream, sink, extra, rid)
        await loop.run_in_executor(None, self.submit, reqs)
        if stream:
            return self._astream(reqs, out)
        results: dict[str, dict] = {}
        try:
            while len(results) < len(reqs):
                item = await self._await(out)
                if item["meta_info"]["finish_reason"] is not None:
                    results[item["meta_info"]["id"]] = item
        finally:  # cancelled (e.g. the HTTP client left): free what is still running
            for r in reqs:
                if r.rid not in results:
                    self.abort(r.rid)
        ordered = [results[r.rid] for r in reqs]
        return single_or_raise(ordered[0]) if single else ordered

    async def _astream(self, reqs: list[Req], out: asyncio.Queue) -> AsyncIterator[dict]:
        left = {r.rid for r in reqs}
        try:
            while left:
                item = await self._await(out)
                if item["meta_info"]["finish_reason"] is not None:
                    left.discard(item["meta_info"]["id"])
                yield item
        finally:
            for rid in left:
                self.abort(rid)

    def apply_chat_template(self, messages: list[dict], tools: list[dict] | None = None) -> list[int]:
        """Token ids of `messages` rendered by the model's chat template; `tools` (OpenAI tool
        definitions) are handed to templates that render them (transformers' `tools=`)."""
        if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m for m in messages):
            raise ValueError("messages must be a list of {'role': ..., 'content': ...} dicts")
        extra = {"tools": tools} if tools else {}
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **extra)
        return self.tokenizer.encode(text, add_special_tokens=False)

    def compile_grammar(self, kind: str, spec: Any) -> "Future[Any]":
        """Compile a grammar spec ahead of the request that will use it (thread-safe): its future
        fails with ValueError naming what is wrong, and the grammar is cached for the request."""
        return self.core.constraints.submit_spec(kind, spec)

    def chat(self, messages: list[dict] | list[list[dict]], sampling_params: Any = None, **kwargs: Any) -> Any:
        """One conversation -> a dict; a list of conversations -> a list. Uses the chat template."""
        if messages and isinstance(messages[0], list):
            return self.generate(input_ids=[self.apply_chat_template(m) for m in messages],
                                 sampling_params=sampling_params, **kwargs)
        return self.generate(input_ids=self.apply_chat_template(messages), sampling_params=sampling_params, **kwargs)

    def flush_cache(self) -> bool:
        """Empty the prefix cache; refused (False) while requests are in flight."""
        return self._call(lambda core: core.flush_cache())

    def get_stats(self) -> dict[str, Any]:
        def read(core: EngineCore) -> dict[str, Any]:
            kv, s = core.kv, core.scheduler
            return {**core.stats, "num_running": len(s.running) + (s.chunked is not None),
                    "num_waiting": len(s.waiting), "kv_capacity": kv.allocator.capacity,
                    "kv_free": kv.allocator.num_free_slots, "kv_evictable": kv.cache.evictable_size(),
                    "kv_locked": kv.cache.locked_size()}
        return self._call(read)

    def check(self) -> None:
        """Raise unless the KV accounting holds (call when no request is in flight)."""
        self._call(lambda core: core.kv.check())

    def shutdown(self) -> None:
        if self._stopped.is_set():
            return
        try:
            self._call(lambda core: core.fail_all("the engine is shutting down"))
        except EngineUnavailableError:  # the loop had stopped already: nothing to end there
            pass
        finally:
            self._stopped.set()
            self._thread.join(timeout=10)
            gc.unfreeze()  # let exit-time collection free what the engine froze (nanobind checks)

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()


def _stop_thread(stopped: threading.Event, thread: threading.Thread) -> None:
    """At garbage collection or interpreter exit: end the loop and wait for it, so the process does
    not exit (std::terminate) while the engine thread is inside an OpenMP region."""
    stopped.set()
    if thread.is_alive() and thread is not threading.current_thread():
        thread.join(timeout=10)
    gc.unfreeze()
