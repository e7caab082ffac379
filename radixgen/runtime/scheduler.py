"""Scheduler: which requests run in the next forward, and with how many tokens each.

Policy (one screen, prefill first like nano-vllm / SGLang):
  1. A partly prefilled (chunked) request continues first.
  2. Waiting requests are admitted in policy order (longest cached prefix first for `lpm`) under a
     token budget (`chunked_prefill_size`), the running-request cap, and a KV reserve for the
     decodes already promised; a prompt longer than the budget is prefilled in chunks.
  3. Otherwise every running request decodes one token; if the pool cannot hold that step, the
     request with the least progress is retracted to the waiting queue (recomputed later).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .config import EngineConfig
from .kv_manager import KVManager
from .request import Req, abort_reason

DECODE_RESERVE_CLIP = 256          # reserve at most this many future tokens per request
INIT_NEW_TOKEN_RATIO, MIN_NEW_TOKEN_RATIO, RATIO_DECAY = 0.7, 0.1, 0.002
LPM_MAX_QUEUE = 128                # longer queues fall back to arrival order (matching costs)
# Tokens compared to detect a shared, uncached prefix in one batch. Short enough to catch a chat
# template's system prompt (22 tokens in the seed workload: its 64-request prefill went from
# 2048 + 77 computed tokens to 33 + 950 once the prefix was computed once and then shared).
SHARED_PREFIX_PROBE = 16


@dataclass
class ScheduledBatch:
    reqs: list[Req]
    starts: list[int]               # kv_len of each request before this forward
    extend_lens: list[int]          # new tokens per request
    out_slots: torch.Tensor         # int64 [sum(extend_lens)] their pool slots
    is_prefill: bool                # admitted from the waiting queue (else: the running batch)
    logit_rows: list[int] = field(default_factory=list)          # flat rows whose logits are computed
    sample_at: list[int | None] = field(default_factory=list)    # per req: index into logits, or None
    prompt_lp: list[tuple[int, int, int] | None] = field(default_factory=list)  # (logit idx, first pos, count)

    @property
    def is_decode(self) -> bool:
        """One new token per request: attention takes the decode path."""
        return max(self.extend_lens) == 1

    def __post_init__(self) -> None:
        offset = 0
        for req, s, n in zip(self.reqs, self.starts, self.extend_lens):
            lp = None
            if req.wants_input_logprobs:  # logits at p predict token p + 1 of the prompt
                lo, hi = max(s, req.params.logprob_start_len - 1, 0), min(s + n, len(req.prompt_ids) - 1)
                if hi > lo or (s == 0 and req.params.logprob_start_len == 0):  # also a 1-token prompt's null entry
                    hi = max(hi, lo)
                    lp = (len(self.logit_rows), lo, hi - lo)
                    self.logit_rows.extend(range(offset + lo - s, offset + hi - s))
            self.prompt_lp.append(lp)
            done = s + n == req.seq_len and req.params.max_new_tokens > 0
            self.sample_at.append(len(self.logit_rows) if done else None)
            if done:
                self.logit_rows.append(offset + n - 1)
            offset += n


class Scheduler:
    def __init__(self, config: EngineConfig, kv: KVManager):
        self.config, self.kv = config, kv
        self.waiting: list[Req] = []
        self.running: list[Req] = []
        self.chunked: Req | None = None
        self.rejected: list[Req] = []   # aborted by the scheduler itself; the engine reports them
        self.new_token_ratio = INIT_NEW_TOKEN_RATIO

    @property
    def num_unfinished(self) -> int:
        return len(self.waiting) + len(self.running) + (self.chunked is not None)

    def schedule(self) -> ScheduledBatch | None:
        for req in [r for r in self.running if self.kv.must_recompute(r)]:
            self._retract(req)  # crossed a long-rope model's switch length: recomputed in long mode
        return self._schedule_prefill() or self._schedule_decode()

    def _schedule_prefill(self) -> ScheduledBatch | None:
        candidates = ([self.chunked] if self.chunked else []) + self._ordered_waiting()
        budget, picked, slots, seen = self.config.chunked_prefill_size, [], [], set()
        reserve = sum(self._future_tokens(r) for r in self.running)
        for req in candidates:
            if budget <= 0 or len(self.running) + len(picked) >= self.config.max_running_requests:
                break
            if req.num_failures and picked:  # in a step that failed: its prefill runs alone (recover)
                continue
            if req.row is None and not self.kv.admit(req):
                break
            probe = (req.kv_len, tuple(req.token_ids(req.kv_len, req.kv_len + SHARED_PREFIX_PROBE)))
            if req is not self.chunked and picked and probe in seen and self.kv.cache.shares:
                self.kv.release(req)  # shares an uncached prefix with a picked request: let that one compute it
                continue
            n = min(req.seq_len - req.kv_len, budget)
            reserve += self._future_tokens(req)
            if self.kv.available() < self.kv.pages_needed(req, n) + reserve and (picked or self.running):
                if req is not self.chunked:
                    self.kv.release(req)
                break
            start, new_slots = req.kv_len, self.kv.extend(req, n)
            if new_slots is None:  # nothing else runs, and even an empty pool cannot hold it
                self._reject(req, "the KV pool is too small for this prompt: raise max_total_tokens")
                continue
            seen.add(probe)
            picked.append((req, start, n))
            slots.append(new_slots)
            budget -= n
            if req.num_failures:
                break
        if not picked:
            return None
        self.chunked = None
        for req, start, n in picked:
            self._drop_waiting(req)
            if start + n < req.seq_len:
                self.chunked = req
        reqs, starts, lens = zip(*picked)
        return ScheduledBatch(list(reqs), list(starts), list(lens), torch.cat(slots), is_prefill=True)

    def _schedule_decode(self) -> ScheduledBatch | None:
        """Every running request advances: one token, or several where jump-forward appended forced
        tokens (then the forward is an extend, so those requests never leave the batch)."""
        if not self.running:
            return None
        while self.kv.available() < sum(self.kv.pages_needed(r, r.seq_len - r.kv_len) for r in self.running):
            if len(self.running) == 1:  # alone and still no room: it ends here, keeping its output
                self._reject(self.running[0], "out of KV slots while decoding: raise max_total_tokens",
                             kind="length")
                return None
            self._retract(min(self.running, key=lambda r: (len(r.output_ids), -len(r.prompt_ids))))
        self.new_token_ratio = max(MIN_NEW_TOKEN_RATIO, self.new_token_ratio - RATIO_DECAY)
        starts = [r.kv_len for r in self.running]
        lens = [r.seq_len - r.kv_len for r in self.running]
        if all(n == 1 for n in lens):
            slots = self.kv.extend_decode(self.running)
        else:
            slots = torch.cat([self.kv.extend(r, n) for r, n in zip(self.running, lens)])
        assert slots is not None, "decode slots were checked above"
        return ScheduledBatch(list(self.running), starts, lens, slots, is_prefill=False)

    def _retract(self, req: Req) -> None:
        """Back to the waiting queue: what it computed stays in the prefix cache for its return."""
        self.running.remove(req)
        self.kv.release(req)
        req.num_retractions += 1
        self.waiting.insert(0, req)
        self.new_token_ratio = min(1.0, self.new_token_ratio + 0.1)

    def requeue(self, reqs: list[Req]) -> None:
        """After a failed step: back to the front of the waiting queue with their KV released (what
        they had cached stays cached), to be prefilled again, each alone (see num_failures)."""
        for req in reversed(reqs):
            if req in self.running:
                self.running.remove(req)
            if self.chunked is req:
                self.chunked = None
            self._drop_waiting(req)
            self.kv.release(req)
            self.waiting.insert(0, req)

    def start_decoding(self, req: Req) -> None:
        """A prefilled request joins the running batch."""
        self.running.append(req)

    def _future_tokens(self, req: Req) -> int:
        left = req.params.max_new_tokens - len(req.output_ids)
        return int(min(left, DECODE_RESERVE_CLIP) * self.new_token_ratio)

    def _ordered_waiting(self) -> list[Req]:
        ready = [r for r in self.waiting if r.grammar_future is None]  # grammars still compiling wait
        if self.config.schedule_policy == "fcfs" or not self.kv.cache.shares or len(ready) > LPM_MAX_QUEUE:
            return ready
        hit = {id(r): self.kv.cache.match_prefix(r.token_ids(0, r.max_cached_len)).length for r in ready}
        return sorted(ready, key=lambda r: -hit[id(r)])  # stable: ties keep arrival order

    def _drop_waiting(self, req: Req) -> None:
        if req in self.waiting:
            self.waiting.remove(req)

    def _reject(self, req: Req, message: str, kind: str = "abort") -> None:
        """End `req` here: "abort" (nothing to give back: the request's fault, 400) or "length" (cut
        short, output kept)."""
        self.remove(req)
        req.finish = abort_reason(message, 400) if kind == "abort" else {
            "type": "length", "length": len(req.output_ids), "message": message}
        self.rejected.append(req)

    def remove(self, req: Req) -> None:
        """Take `req` out of every queue and free its KV (finished or aborted)."""
        self._drop_waiting(req)
        if req in self.running:
            self.running.remove(req)
        if self.chunked is req:
            self.chunked = None
        self.kv.release(req)
