"""The logits path of a step, in one place: grammar masks, logit_bias and penalties, temperature,
top-k / top-p / min-p, per-request seeds, logprobs (`Sampler`), with the kernels it needs taken
from the attention backend (argmax, apply_token_bitmask).

All per-request knobs become [B] tensors once per step; the work on [B, V] logits is a handful of
tensor operations whatever the batch size. Per-row Python runs only for seeded requests' draws.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from types import ModuleType
from typing import Callable

import torch

from radixgen.constrained import fill_batch_bitmask, make_bitmask
from radixgen.kernels import reference

from .request import Req, TokenLogprob

log = logging.getLogger("radixgen")


@dataclass
class Sampled:
    tokens: list[int]                                   # the next token of each request
    logprobs: list[float] | None = None                 # raw-model logprob of each, if any row asked
    top: list[list[TokenLogprob]] | None = None         # the top alternatives of each, likewise
    errors: dict[int, str] = field(default_factory=dict)  # row -> why that request could not be sampled


class Sampler:
    """One step's logits -> tokens. A failure is pinned on its request: if the batch raises, each row
    is redone alone, and the rows that fail alone come back in `errors` (the engine ends those
    requests with the reason; the others are sampled as usual)."""

    def __init__(self, backend: ModuleType, generator: torch.Generator):
        self.backend, self.generator = backend, generator

    def __call__(self, logits: torch.Tensor, reqs: list[Req], stop_ids: Callable[[Req], list[int]]) -> Sampled:
        """logits: [B, V] in the model dtype, one row per request (modified in place)."""
        try:
            return self._batch(logits, reqs, stop_ids)
        except Exception:  # noqa: BLE001 - found per row below
            log.exception("sampling a batch of %d failed; sampling its rows one by one", len(reqs))
        parts, errors = [], {}
        for i, req in enumerate(reqs):
            try:
                parts.append(self._batch(logits[i: i + 1], [req], stop_ids))
            except Exception as exc:  # noqa: BLE001 - this request's alone
                errors[i] = f"{type(exc).__name__}: {exc}"
                parts.append(Sampled([-1], [0.0], [[]]))
        with_lp = any(p.logprobs is not None for p in parts)
        return Sampled([p.tokens[0] for p in parts],
                       [(p.logprobs or [0.0])[0] for p in parts] if with_lp else None,
                       [(p.top or [[]])[0] for p in parts] if with_lp else None, errors)

    def _batch(self, logits: torch.Tensor, reqs: list[Req], stop_ids: Callable[[Req], list[int]]) -> Sampled:
        want_logprobs = any(r.params.return_logprob for r in reqs)
        penalties = needs_penalties(reqs)
        masked = any(r.grammar is not None or r.loop_ban is not None for r in reqs)
        raw = logits
        if want_logprobs or penalties or not all(r.params.is_greedy for r in reqs):
            raw = raw.float()  # a greedy batch, masked or not, takes its argmax in the model dtype
        # raw stays whole for logprobs, and `logits` for a per-row retry, except for masks: they
        # only write -inf, so redoing them is harmless (no copy on the greedy masked path)
        keep = want_logprobs or (penalties and raw is logits)
        work = raw.clone() if (masked or penalties) and keep else raw
        if masked:  # a mask only writes -inf, exact in bf16
            bitmask = make_bitmask(len(reqs), work.shape[-1])             # int32 [B, ceil(V / 32)]
            fill_batch_bitmask(bitmask, [r.grammar for r in reqs])         # unconstrained rows stay all-ones
            self.backend.apply_token_bitmask(work, bitmask)
            apply_loop_bans(work, reqs)
        if penalties:
            apply_penalties(work, reqs, [stop_ids(r) for r in reqs])
        tokens = sample(work, reqs, self.generator, self.backend.argmax)
        if not want_logprobs:
            return Sampled(tokens.tolist())
        lps, tops = gather_logprobs(raw, tokens, max(r.params.top_logprobs_num for r in reqs))
        return Sampled(tokens.tolist(), lps, tops)


def apply_loop_bans(logits: torch.Tensor, reqs: list[Req]) -> None:
    """In place, after the grammar masks: each row's loop_ban (loop_guard.py) goes to -inf, unless
    it is the only token the row's grammar allows."""
    for i, req in enumerate(reqs):
        if req.loop_ban is None:
            continue
        kept = logits[i, req.loop_ban].clone()
        logits[i, req.loop_ban] = float("-inf")
        if not bool(torch.isfinite(logits[i]).any()):
            logits[i, req.loop_ban] = kept


def apply_penalties(logits: torch.Tensor, reqs: list[Req], stop_ids: list[list[int]]) -> None:
    """In place: logit_bias, min_new_tokens (stop tokens banned), frequency / presence / repetition
    penalties. Token ids were checked against the vocabulary when each request arrived."""
    for i, req in enumerate(reqs):
        if req.params.logit_bias:
            ids, bias = zip(*req.params.logit_bias.items())
            logits[i, list(ids)] += torch.tensor(bias, dtype=logits.dtype)
        if len(req.output_ids) < req.params.min_new_tokens and stop_ids[i]:
            logits[i, stop_ids[i]] = float("-inf")
    ps = [r.params for r in reqs]
    if any(p.frequency_penalty or p.presence_penalty for p in ps):
        b, v = logits.shape
        counts = torch.zeros(b, v, dtype=logits.dtype)
        for i, req in enumerate(reqs):
            if req.output_ids:
                counts[i].index_add_(0, torch.tensor(req.output_ids), torch.ones(len(req.output_ids)))
        freq = torch.tensor([p.frequency_penalty for p in ps]).unsqueeze(1)
        pres = torch.tensor([p.presence_penalty for p in ps]).unsqueeze(1)
        logits -= freq * counts + pres * (counts > 0)
    for i, req in enumerate(reqs):
        rp = req.params.repetition_penalty
        if rp != 1.0:  # HF's rule over prompt + output: divide positive logits, multiply negative ones
            seen = torch.tensor(sorted(set(req.prompt_ids) | set(req.output_ids)))
            vals = logits[i, seen]
            logits[i, seen] = torch.where(vals > 0, vals / rp, vals * rp)


def sample(logits: torch.Tensor, reqs: list[Req], generator: torch.Generator,
           argmax: Callable[[torch.Tensor], torch.Tensor] = reference.argmax) -> torch.Tensor:
    """logits: [B, V] (already masked / penalised; float32 unless every row is greedy) -> int64 [B]
    next tokens. `argmax`: the backend's (the C++ kernel on a CPU: torch's bf16 max() took ~8 ms of
    a batch-256 step)."""
    greedy = torch.tensor([r.params.is_greedy for r in reqs])
    if bool(greedy.all()):
        return argmax(logits)
    ps = [r.params for r in reqs]
    temp = torch.tensor([1.0 if p.is_greedy else p.temperature for p in ps]).unsqueeze(1)
    probs = torch.softmax(logits / temp, dim=-1)
    if any(p.top_k > 0 or p.top_p < 1.0 for p in ps):
        probs = _top_k_top_p(probs, ps)
    min_p = torch.tensor([p.min_p for p in ps]).unsqueeze(1)
    if bool((min_p > 0).any()):
        probs = probs.masked_fill(probs < min_p * probs.max(-1, keepdim=True).values, 0.0)
    # Exponential race (Gumbel-max in disguise): argmax(p / E) samples from p; one draw per row.
    noise = torch.empty_like(probs).exponential_(generator=generator)
    for i, req in enumerate(reqs):
        if req.generator is not None:  # seeded: the row's noise comes from its own generator
            noise[i].exponential_(generator=req.generator)
    sampled = (probs / noise).argmax(-1)
    return torch.where(greedy, argmax(logits), sampled)


def needs_penalties(reqs: list[Req]) -> bool:
    """Whether any row gets arithmetic on its logits (penalties) or stop tokens banned
    (min_new_tokens); a grammar's mask alone only writes -inf, which bf16 holds exactly."""
    return any(len(r.output_ids) < r.params.min_new_tokens or r.params.frequency_penalty or r.params.logit_bias
               or r.params.presence_penalty or r.params.repetition_penalty != 1.0 for r in reqs)


def _top_k_top_p(probs: torch.Tensor, ps: list) -> torch.Tensor:
    """Zero the probabilities outside each row's top-k and top-p nucleus (sort once for both)."""
    sorted_p, idx = probs.sort(dim=-1, descending=True)
    v = probs.shape[-1]
    k = torch.tensor([p.top_k if p.top_k > 0 else v for p in ps]).unsqueeze(1)
    top_p = torch.tensor([p.top_p for p in ps]).unsqueeze(1)
    rank = torch.arange(v).unsqueeze(0)
    before = sorted_p.cumsum(-1) - sorted_p  # mass strictly before each token
    drop = (rank >= k) | (before >= top_p)
    sorted_p = sorted_p.masked_fill(drop, 0.0)
    return torch.zeros_like(probs).scatter_(-1, idx, sorted_p)


def gather_logprobs(logits: torch.Tensor, token_ids: torch.Tensor, top_n: int
                    ) -> tuple[list[float], list[list[TokenLogprob]]]:
    """Raw-model logprobs of `token_ids` ([N]) under `logits` ([N, V]) and the top_n alternatives."""
    logp = torch.log_softmax(logits, dim=-1)
    chosen = logp.gather(-1, token_ids.unsqueeze(-1)).squeeze(-1).tolist()
    top: list[list[TokenLogprob]] = [[] for _ in chosen]
    if top_n > 0:
        vals, ids = logp.topk(top_n, dim=-1)
        top = [list(zip(v, i)) for v, i in zip(vals.tolist(), ids.tolist())]
    return chosen, top
