"""Plain-torch attention over the paged KV pool: the reference for the Triton kernels and the CPU path.

Shapes: T new tokens, B requests, H query heads, KVH kv heads (H % KVH == 0), D head dim, S pool slots.
The work is padded per request ([B, Q, K]) so one SDPA call covers the whole batch; the gathers and
the mask come from `AttnMeta` and are built once per forward, not once per layer.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .meta import AttnMeta


def write_kv(k_pool: torch.Tensor, v_pool: torch.Tensor, out_slots: torch.Tensor,
             k: torch.Tensor, v: torch.Tensor) -> None:
    """k_pool, v_pool: [S, KVH, D]; out_slots: int64 [T]; k, v: [T, KVH, D]. Writes in place."""
    k_pool.index_copy_(0, out_slots, k.to(k_pool.dtype))
    v_pool.index_copy_(0, out_slots, v.to(v_pool.dtype))


def _gather_kv(pool: torch.Tensor, meta: AttnMeta) -> torch.Tensor:
    """[S, KVH, D] -> [B, KVH, K, D] keys (or values) of every request, padded to max_seq."""
    b, k = meta.kv_index.shape
    return pool.index_select(0, meta.kv_index.reshape(-1)).view(b, k, *pool.shape[1:]).transpose(1, 2)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, meta: AttnMeta,
            sm_scale: float) -> torch.Tensor:
    """q [B, H, Q, D], k / v [B, KVH, K, D] -> [B, H, Q, D] under meta.mask. SDPA, or with a soft cap
    (which SDPA cannot apply) the same in explicit steps, as transformers' eager Gemma 2 does."""
    if not meta.softcap:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=meta.mask, scale=sm_scale, enable_gqa=True)
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)  # [B, H, K, D]
    scores = (q @ k.transpose(-1, -2)) * sm_scale                                 # [B, H, Q, K]
    scores = torch.tanh(scores / meta.softcap) * meta.softcap
    scores = scores.masked_fill(~meta.mask, float("-inf"))
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
    return torch.nan_to_num(probs) @ v  # padded query rows see no key: NaN -> 0, dropped later


def decode_attention(q: torch.Tensor, k_pool: torch.Tensor, v_pool: torch.Tensor,
                     meta: AttnMeta, sm_scale: float) -> torch.Tensor:
    """q: [B, H, D], one token per request, whose K/V are already in the pool -> [B, H, D]. A pool
    of another dtype than q (bf16 KV under an fp32 model) is read as q's."""
    k, v = _gather_kv(k_pool, meta).to(q.dtype), _gather_kv(v_pool, meta).to(q.dtype)
    return _attend(q.unsqueeze(2), k, v, meta, sm_scale).squeeze(2)


def extend_attention(q: torch.Tensor, k_pool: torch.Tensor, v_pool: torch.Tensor,
                     meta: AttnMeta, sm_scale: float) -> torch.Tensor:
    """q: [T, H, D] new tokens (their K/V already written to the pool); each attends to its request's
    prefix and causally to the new tokens before it -> [T, H, D]."""
    b_idx, i_idx = meta.token_pos
    qp = q.new_zeros(meta.batch_size, meta.max_extend, *q.shape[1:])  # [B, Q, H, D]
    qp[b_idx, i_idx] = q
    k, v = _gather_kv(k_pool, meta).to(q.dtype), _gather_kv(v_pool, meta).to(q.dtype)
    out = _attend(qp.transpose(1, 2), k, v, meta, sm_scale)  # [B, H, Q, D]
    return out.transpose(1, 2)[b_idx, i_idx]


def apply_token_bitmask(logits: torch.Tensor, bitmask: torch.Tensor) -> None:
    """logits: float [B, V]; bitmask: int32 [B, ceil(V / 32)], bit j of word w allows token 32*w + j.
    Sets disallowed logits to -inf in place."""
    v = logits.shape[-1]
    bits = torch.arange(32, dtype=torch.int32, device=bitmask.device)
    allowed = ((bitmask.unsqueeze(-1) >> bits) & 1).bool().flatten(-2)[..., :v]  # [B, V]
    logits.masked_fill_(~allowed, float("-inf"))


def argmax(logits: torch.Tensor) -> torch.Tensor:
    """logits: [B, V] -> int64 [B], the first index of each row's maximum (max() ran ~2x faster
    than argmax() on a CPU)."""
    return logits.max(dim=-1).indices
