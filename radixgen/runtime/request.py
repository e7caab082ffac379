"""Req: one sequence being generated, with its KV bookkeeping and its outputs."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from .sampling_params import SamplingParams

# (logprob, token id) of a sampled or prompt token; top alternatives as lists of those.
TokenLogprob = tuple[float | None, int]


def abort_reason(message: str, status_code: int) -> dict:
    """An abort's finish_reason (SGLang's dict, the wire format). `status_code` is the HTTP status a
    server answers with: 400 the request's fault, 499 the client left, 500 ours, 503 retry elsewhere.
    Servers read it, never the message."""
    return {"type": "abort", "message": message, "status_code": status_code}


def sample_rid(rid: str, j: int) -> str:
    """The id of sample j of a request sent with n > 1 (the one place this naming is written)."""
    return f"{rid}-{j}"


@dataclass(eq=False)
class Req:
    rid: str
    prompt_ids: list[int]
    params: SamplingParams
    sink: Callable[["Req"], None] | None = None   # called on the engine thread after each new token
    stream: bool = False                            # keep `text` up to date every step
    output_ids: list[int] = field(default_factory=list)
    # KV bookkeeping (owned by KVManager): slots of tokens [0, kv_len) are in the slot-table row.
    row: int | None = None
    kv_len: int = 0
    cached_len: int = 0        # leading tokens whose slots belong to the prefix cache (node locked)
    node: Any = None
    rope_long: bool = False    # its KV uses a long-rope model's long factors (see KVManager)
    hit_len: int = 0           # cache hit at first admission (meta_info.cached_tokens)
    num_retractions: int = 0
    num_failures: int = 0      # failed engine steps this request was part of (EngineCore.recover)
    # outputs
    text: str = ""
    finish: dict | None = None
    output_logprobs: list[TokenLogprob] = field(default_factory=list)
    output_top: list[list[TokenLogprob]] = field(default_factory=list)
    input_logprobs: list[TokenLogprob] = field(default_factory=list)
    input_top: list[list[TokenLogprob]] = field(default_factory=list)
    generator: torch.Generator | None = None
    grammar: Any = None        # constrained.GrammarMatcher, when the request has a constraint
    grammar_future: Any = None  # Future[CompiledGrammar] while the grammar compiles
    num_forced: int = 0        # output tokens appended by jump-forward, not sampled
    loop_ban: int | None = None  # a token the next sample may not take (loop_guard_action="escape")
    loop_escapes: int = 0
    detok: Any = None          # IncrementalDetokenizer, when streaming or matching stop strings
    arrival: float = field(default_factory=time.perf_counter)
    first_token_time: float | None = None
    sent_text: int = 0          # how much of text / output_ids streaming has already handed out
    sent_ids: int = 0

    @property
    def seq_len(self) -> int:
        return len(self.prompt_ids) + len(self.output_ids)

    def token_ids(self, start: int, end: int) -> list[int]:
        """Tokens [start, end) of prompt + output, without building the whole list."""
        p = len(self.prompt_ids)
        if end <= p:
            return self.prompt_ids[start:end]
        if start >= p:
            return self.output_ids[start - p:end - p]
        return self.prompt_ids[start:] + self.output_ids[: end - p]

    @property
    def is_finished(self) -> bool:
        return self.finish is not None

    @property
    def wants_input_logprobs(self) -> bool:
        return self.params.return_logprob and self.params.logprob_start_len >= 0 and self.num_retractions == 0

    @property
    def max_cached_len(self) -> int:
        """How much of the prompt may come from the cache: at least one token must be computed to
        get logits, and prompt logprobs from logprob_start_len need the tokens before it computed."""
        limit = self.seq_len - 1
        if self.wants_input_logprobs:
            limit = min(limit, max(self.params.logprob_start_len - 1, 0))
        return limit
