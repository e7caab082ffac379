"""The element-wise parts of a Llama layer, in plain torch: the reference for the fused CPU ops
(cpu_layer_ops.py) and the path every other device and dtype takes.

Each function computes exactly what transformers' Llama computes, rounding where it rounds (float32
runs must match it token for token). Shapes: T tokens, H / KVH query / kv heads, D head dim.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

WriteKV = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], None]


def add_rmsnorm(x: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor,
                eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """x, residual: [T, hidden]. residual + x (x alone when residual is None) and its RMSNorm:
    returns (normed, new residual). The new residual may be `residual` updated in place."""
    if residual is not None:
        x = residual + x
    h = x.float()  # normalise in fp32, then scale in the model dtype, as transformers does
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype), x


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [T, h, D]; cos, sin: [T, 1, R] in x's dtype, R <= D. Rotates halves of the first R dims
    (HF's non-interleaved layout); the rest pass through (partial rotary, Phi-4-mini)."""
    r = cos.shape[-1]
    if r < x.shape[-1]:
        return torch.cat((rotate(x[..., :r], cos, sin), x[..., r:]), dim=-1)
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


def rope_write_kv(qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, k_pool: torch.Tensor,
                  v_pool: torch.Tensor, out_slots: torch.Tensor, num_heads: int,
                  write_kv: WriteKV) -> torch.Tensor:
    """qkv: [T, (H + 2 KVH) * D] fused projection; cos, sin: [T, R] rows of the rotary tables for
    these tokens (R = D, or fewer for partial rotary); pools [S, KVH, D]; out_slots: int64 [T].
    Rotates q and k, writes k and v to the pools with the backend's `write_kv`, returns q [T, H, D]."""
    t, (kvh, d) = qkv.shape[0], k_pool.shape[1:]
    q, k, v = qkv.split([num_heads * d, kvh * d, kvh * d], dim=-1)
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    q = rotate(q.view(t, num_heads, d), cos, sin)
    write_kv(k_pool, v_pool, out_slots, rotate(k.view(t, kvh, d), cos, sin), v.view(t, kvh, d))
    return q


def silu_mul(gate_up: torch.Tensor) -> torch.Tensor:
    """gate_up: [T, 2I] (gate then up) -> silu(gate) * up, [T, I]."""
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up
