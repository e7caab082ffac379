"""EngineCore: the single-threaded heart. `step()` = schedule, run, process results.

Not thread-safe: `Engine` drives it from one thread and talks to it through a queue.
"""
from __future__ import annotations

import itertools
import logging
import time
from typing import Any

import torch

from radixgen.radix import NoPrefixCache, PrefixCache

from .config import EngineConfig
from .constraint import Constraints
from .detokenizer import IncrementalDetokenizer
from .errors import EngineOverloadedError
from .kv_manager import KVManager
from .loop_guard import MAX_ESCAPES, loop_period
from .memory_pool import PageAllocator, ReqToSlot
from .model_runner import ModelRunner
from .request import Req, abort_reason, sample_rid
from .sampler import Sampler, gather_logprobs
from .scheduler import ScheduledBatch, Scheduler

log = logging.getLogger("radixgen")
MAX_STRIKES = 2  # failed steps a request may be part of before it is taken to be the cause


def make_prefix_cache(config: EngineConfig, allocator: PageAllocator) -> PrefixCache:
    if config.disable_radix_cache:
        return NoPrefixCache(allocator.free, config.page_size)
    from radixgen.radix import RadixCache
    return RadixCache(allocator.free, config.page_size)


class EngineCore:
    def __init__(self, config: EngineConfig):
        self.config = config
        self.runner = ModelRunner(config)  # with tp_size > 1 it starts the other ranks (runtime/tp/)
        self.tokenizer = self.runner.tokenizer
        ps = config.page_size
        # One request must fit the pool whole: a context longer than the pool (less its padding
        # page) would admit prompts that can never finish, so it is capped, and the log says so.
        self.context_length = min(self.runner.context_length, self.runner.num_slots - ps)
        if self.context_length < self.runner.context_length:
            log.warning("the KV pool holds %d tokens, fewer than the context length %d: requests are "
                        "capped at %d tokens (raise max_total_tokens or mem_fraction_static for more)",
                        self.runner.num_slots - ps, self.runner.context_length, self.context_length)
        allocator = PageAllocator(self.runner.num_slots // ps, ps)
        rows = ReqToSlot(config.max_running_requests + 2, self.context_length + ps, self.runner.device)
        self.kv = KVManager(allocator, rows, make_prefix_cache(config, allocator), self.runner.rope_switch_len)
        self.scheduler = Scheduler(config, self.kv)
        self.generator = torch.Generator().manual_seed(config.random_seed)
        self.eos_ids = self._eos_ids()
        self.constraints = Constraints(self.tokenizer, config)
        self.sampler = Sampler(self.runner.backend, self.generator)
        self.reqs: dict[str, Req] = {}
        self.batch: ScheduledBatch | None = None   # the step in flight
        self.stats = {"prompt_tokens": 0, "cached_tokens": 0, "generation_tokens": 0, "forwards": 0,
                      "prefill_tokens_computed": 0, "retractions": 0}

    def _eos_ids(self) -> set[int]:
        ids = {self.tokenizer.eos_token_id}
        for source in (self.runner.hf_config, getattr(self.runner, "generation_config", None)):
            eos = getattr(source, "eos_token_id", None)
            ids.update(eos if isinstance(eos, list) else [eos])
        return {i for i in ids if i is not None}

    # ---- requests in ----
    def add_requests(self, reqs: list[Req]) -> None:
        """Queue a call's requests, all or (on the first error, raised) the ones before it; the
        caller aborts those. Past max_queued_requests none is queued (EngineOverloadedError)."""
        bound = self.config.max_queued_requests
        if bound is not None and len(self.scheduler.waiting) + len(reqs) > bound:
            if len(reqs) > bound:
                raise ValueError(f"{len(reqs)} requests in one call (prompts x n), over the bound of "
                                 f"{bound} queued requests")
            raise EngineOverloadedError(f"the waiting queue is full ({len(self.scheduler.waiting)} of {bound})")
        for req in reqs:
            self.add_request(req)

    def add_request(self, req: Req) -> None:
        """Validate and queue; raises ValueError (and queues nothing) on bad input."""
        n = len(req.prompt_ids)
        if n == 0:
            raise ValueError("the prompt is empty")
        if n >= self.context_length:
            raise ValueError(f"the prompt has {n} tokens, over the context length of {self.context_length} "
                             "(the prompt must leave room for at least one new token)")
        vocab = self.runner.arch.vocab_size
        if min(req.prompt_ids) < 0 or max(req.prompt_ids) >= vocab:
            raise ValueError(f"input_ids must be token ids in [0, {vocab})")
        for name, ids in (("stop_token_ids", req.params.stop_token_ids), ("logit_bias", req.params.logit_bias)):
            if ids and max(ids) >= vocab:  # would index past the logits inside a batched step
                raise ValueError(f"{name} must be token ids in [0, {vocab}); got {max(ids)}")
        if req.rid in self.reqs:
            raise ValueError(f"request id {req.rid!r} is already in flight")
        if req.params.seed is not None:
            req.generator = torch.Generator().manual_seed(req.params.seed)
        if req.stream or req.params.stop:
            p = req.params
            req.detok = IncrementalDetokenizer(self.tokenizer, p.skip_special_tokens, p.spaces_between_special_tokens)
        if req.params.grammar is not None:
            self.constraints.submit(req)
        self.reqs[req.rid] = req
        self.scheduler.waiting.append(req)
        self.stats["prompt_tokens"] += n

    def abort_waiting(self, message: str) -> int:
        """End every request not yet started (a server going down); -> how many. They are owed a
        retry elsewhere (status 503), the running ones are left to finish."""
        waiting = [r for r in self.scheduler.waiting if r.kv_len == 0 and not r.output_ids]
        for req in waiting:
            self.abort(req.rid, message, 503)
        return len(waiting)

    def abort(self, rid: str, message: str = "aborted by the client", status_code: int = 499) -> None:
        """Abort `rid`, and its samples `rid-0`, `rid-1`, ... when it was sent with n > 1."""
        keys = [rid] if rid in self.reqs else list(itertools.takewhile(
            lambda k: k in self.reqs, (sample_rid(rid, j) for j in itertools.count())))
        for key in keys:
            req = self.reqs[key]
            if not req.is_finished:
                self.scheduler.remove(req)
                req.finish = abort_reason(message, status_code)
                self._emit(req)

    @property
    def has_work(self) -> bool:
        return self.scheduler.num_unfinished > 0

    # ---- the loop ----
    @torch.inference_mode()
    def step(self) -> bool:
        """One forward (or none if idle). Returns whether any work was done."""
        self._resolve_grammars()
        batch = self.scheduler.schedule()
        for req in self.scheduler.rejected:  # their output so far is kept, with the reason
            self._finish(req, req.finish)
            self._emit(req)
        self.scheduler.rejected.clear()
        if batch is None:
            return False
        self.batch = batch  # for recover(), should this step raise
        logits = self.runner.forward(batch, self.kv.slots.table)
        self.stats["forwards"] += 1
        if batch.is_prefill:
            self.stats["prefill_tokens_computed"] += sum(batch.extend_lens)
        self._process(batch, logits)
        self.batch = None
        return True

    def recover(self, message: str) -> None:
        """After step() raised. Its unfinished requests go back to the waiting queue as suspects, whose
        prefills then run alone; a request whose step fails alone, or that was in MAX_STRIKES failed
        steps, is the one at fault and ends with `message`. Everyone else goes on."""
        batch, self.batch = self.batch, None
        reqs = [] if batch is None else [r for r in batch.reqs if not r.is_finished]
        for req in reqs:
            req.num_failures += 1
            if len(batch.reqs) == 1 or req.num_failures >= MAX_STRIKES:
                self.abort(req.rid, message, 500)
        self.scheduler.requeue([r for r in reqs if not r.is_finished])
        if batch is None:  # not inside a forward: nothing to blame, nothing half-written
            return
        # a failed step may have cached tokens whose KV it never wrote: drop what nobody holds
        self.kv.cache.evict(self.kv.cache.evictable_size())

    def _resolve_grammars(self) -> None:
        for req in [r for r in self.scheduler.waiting if r.grammar_future is not None and r.grammar_future.done()]:
            error = self.constraints.resolve(req)
            if error is not None:  # this request alone ends; a single-request caller gets a ValueError
                self.scheduler.remove(req)
                req.finish = abort_reason(error, 400)
                self._emit(req)

    def _process(self, batch: ScheduledBatch, logits: torch.Tensor) -> None:
        for req, lp in zip(batch.reqs, batch.prompt_lp):
            if lp is not None:
                self._prompt_logprobs(req, logits, *lp)
        idx = [i for i, a in enumerate(batch.sample_at) if a is not None]
        if idx:
            reqs = [batch.reqs[i] for i in idx]
            rows = [batch.sample_at[i] for i in idx]
            raw = logits if rows == list(range(len(logits))) else logits[torch.tensor(rows)]
            out = self.sampler(raw, reqs, self._stop_ids)
            for j, (req, tok) in enumerate(zip(reqs, out.tokens)):
                if j in out.errors:  # its logits could not be sampled: it ends, the batch goes on
                    self._finish(req, abort_reason(f"internal error: {out.errors[j]}", 500), final_text=req.text)
                    continue
                try:  # grammar, detokenizer, stop strings: a failure here is this request's alone
                    if req.params.return_logprob:
                        req.output_logprobs.append((out.logprobs[j], tok))
                        req.output_top.append(out.top[j][: req.params.top_logprobs_num])
                    self._append(req, tok)
                except Exception as exc:  # noqa: BLE001 - ends this request, with the reason
                    log.exception("request %s failed after its step", req.rid)
                    self._finish(req, abort_reason(f"internal error: {type(exc).__name__}: {exc}", 500),
                                 final_text=req.text)
        for req in batch.reqs:
            if batch.is_prefill and req.kv_len == req.seq_len and req.params.max_new_tokens == 0:
                self._finish(req, {"type": "length", "length": 0})
            if req.is_finished:
                self.scheduler.remove(req)
                self._emit(req)
                continue
            if batch.is_prefill:
                self.kv.cache_prefix(req)
                if self.scheduler.chunked is not req:
                    self.scheduler.start_decoding(req)

    def _prompt_logprobs(self, req: Req, logits: torch.Tensor, at: int, pos: int, count: int) -> None:
        if not req.input_logprobs and req.params.logprob_start_len == 0:
            req.input_logprobs.append((None, req.prompt_ids[0]))  # the first token has no prediction
            req.input_top.append([])
        if count == 0:
            return
        targets = torch.tensor(req.prompt_ids[pos + 1: pos + 1 + count])
        lps, tops = gather_logprobs(logits[at: at + count].float(), targets, req.params.top_logprobs_num)
        req.input_logprobs.extend(zip(lps, targets.tolist()))
        req.input_top.extend(tops)

    def _stop_ids(self, req: Req) -> list[int]:
        ids = [] if req.params.ignore_eos else sorted(self.eos_ids)
        return ids + req.params.stop_token_ids

    def _append(self, req: Req, tok: int) -> None:
        req.output_ids.append(tok)
        self.stats["generation_tokens"] += 1
        if req.first_token_time is None:
            req.first_token_time = time.perf_counter()
        p = req.params
        if req.detok is not None:
            req.text += req.detok.step(req.output_ids)
        if tok in p.stop_token_ids or (not p.ignore_eos and tok in self.eos_ids):
            return self._finish(req, {"type": "stop", "matched": tok})
        if req.grammar is not None and self._advance_grammar(req, tok):
            return
        if p.stop and self._match_stop_string(req):
            return
        if len(req.output_ids) >= p.max_new_tokens:
            return self._finish(req, {"type": "length", "length": p.max_new_tokens})
        if p.loop_guard and self._loops(req):
            return self._finish(req, {"type": "length", "length": len(req.output_ids), "loop": True})
        if req.seq_len >= self.context_length:
            return self._finish(req, {"type": "length", "length": len(req.output_ids)})
        if req.stream:
            self._notify(req)

    def _loops(self, req: Req) -> bool:
        """Whether `req` loops and is to end; with the "escape" action, sets the token to ban next
        (loop_guard.py) until the escapes run out."""
        req.loop_ban = None
        period = loop_period(req.output_ids, req.params.loop_guard)
        if not period:
            return False
        if req.params.loop_guard_action == "escape" and req.loop_escapes < MAX_ESCAPES:
            req.loop_ban, req.loop_escapes = req.output_ids[-period], req.loop_escapes + 1
            return False
        return True

    def _advance_grammar(self, req: Req, tok: int) -> bool:
        """Move the matcher; jump forward over forced text. True if the request finished."""
        if not req.grammar.advance(tok):
            # a token that opens a stop string where the text was complete (GrammarMatcher.allow_stops)
            if req.params.stop and self._match_stop_string(req):
                return True
            # otherwise only reachable when the mask was bypassed (penalties can't)
            self._finish(req, abort_reason(f"internal error: token {tok} violates the grammar", 500))
            return True
        if req.grammar.is_finished():  # complete, and nothing may follow: end as if EOS came
            self._finish(req, {"type": "stop", "matched": None})
            return True
        forced = self.constraints.forced_tokens(req)
        if forced:
            req.output_ids.extend(forced)
            req.num_forced += len(forced)
            self.stats["generation_tokens"] += len(forced)
            if req.detok is not None:
                req.text += req.detok.step(req.output_ids)
            if req.grammar.is_finished():
                self._finish(req, {"type": "stop", "matched": None})
                return True
        return False

    def _match_stop_string(self, req: Req) -> bool:
        window = max(len(s) for s in req.params.stop) + 16
        tail_start = max(0, len(req.text) - window)
        for s in req.params.stop:
            at = req.text.find(s, tail_start)
            if at >= 0:
                req.text = req.text[: at + len(s)] if req.params.no_stop_trim else req.text[:at]
                self._finish(req, {"type": "stop", "matched": s}, final_text=req.text)
                return True
        return False

    def _finish(self, req: Req, reason: dict[str, Any], final_text: str | None = None) -> None:
        req.finish = reason
        if final_text is None:
            ids = req.output_ids
            if reason["type"] == "stop" and isinstance(reason.get("matched"), int) and not req.params.no_stop_trim:
                ids = ids[:-1]
            p = req.params
            req.text = self.tokenizer.decode(ids, skip_special_tokens=p.skip_special_tokens)

    def _emit(self, req: Req) -> None:
        if req.is_finished:
            self.reqs.pop(req.rid, None)
            self.stats["cached_tokens"] += req.hit_len
            self.stats["retractions"] += req.num_retractions
        self._notify(req)

    @staticmethod
    def _notify(req: Req) -> None:
        """Hand `req` to its caller's sink; a caller that went away (closed event loop) is its problem."""
        if req.sink is None:
            return
        try:
            req.sink(req)
        except Exception:  # noqa: BLE001 - never the engine's or the batch's failure
            log.warning("could not deliver output of %s", req.rid, exc_info=True)

    def close(self) -> None:
        """Stop the grammar compiler's threads and child processes and the tensor-parallel ranks."""
        try:
            self.constraints.close()
        finally:
            self.runner.close()

    def fail_all(self, message: str, status_code: int = 503) -> None:
        """After an internal error: end every request cleanly and give back their KV."""
        for req in list(self.reqs.values()):
            self.abort(req.rid, message, status_code)
        self.flush_cache()  # a failed forward may have left unwritten KV behind tokens it inserted

    def flush_cache(self) -> bool:
        if self.has_work:
            return False
        self.kv.cache.evict(self.kv.cache.evictable_size())
        self.kv.cache.reset()
        return True
