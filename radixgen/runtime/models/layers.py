"""Layers every family shares, written for flat token batches and the paged KV pool.

A forward takes T tokens from many requests at once; attention reads and writes the shared pool
through `AttnMeta` (see radixgen.kernels.meta). The element-wise work (residual add + RMSNorm,
rotary + KV write, SiLU * up) goes through `ctx.ops`: kernels.layer_ops (torch) or its fused CPU
version. The residual stream is carried beside the normed activations, vLLM-style, so each residual
add is fused with the norm that follows it.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import nn

from radixgen.kernels import AttnMeta

from .arch import ModelArch
from .linear import Linear


@dataclass
class ForwardContext:
    """What attention needs for one forward; passed down as an argument, never stored globally."""
    meta: AttnMeta
    k_pool: torch.Tensor      # [L, S, KVH, D]
    v_pool: torch.Tensor      # [L, S, KVH, D]
    backend: ModuleType       # write_kv / decode_attention / extend_attention
    ops: ModuleType           # add_rmsnorm / rope_write_kv / silu_mul (kernels.layer_ops or fused)
    # rotary table name -> (cos, sin) rows of this forward's positions, [T, D] each, model dtype
    rope: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    rope_long: torch.Tensor | None = None  # bool [T]: the token takes long-rope rows (see KVManager)
    _windowed: dict[tuple[int, float], AttnMeta] = field(default_factory=dict)

    def meta_for(self, window: int, softcap: float = 0.0) -> AttnMeta:
        """The batch layout a layer with this sliding window (0 = none) and score soft cap (0 = none)
        attends with: built once per forward and (window, cap). When no sequence is longer than the
        window, nothing is cut."""
        if window <= 0 or self.meta.max_seq <= window:
            window = 0
        if not window and not softcap:
            return self.meta
        if (window, softcap) not in self._windowed:
            self._windowed[(window, softcap)] = dataclasses.replace(self.meta, window=window, softcap=softcap)
        return self._windowed[(window, softcap)]


class RMSNorm(nn.Module):
    """Holds the weight; the math is ctx.ops.add_rmsnorm, fused with the residual add before it.
    Gemma's (1 + w) norms store 1 + w here (added at load: see LlamaForCausalLM.load_hf_state_dict)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(dim)), eps

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None,
                ctx: ForwardContext) -> tuple[torch.Tensor, torch.Tensor]:
        """(normed residual + x, residual + x); residual None means x is the residual stream."""
        return ctx.ops.add_rmsnorm(x, residual, self.weight, self.eps)


class Attention(nn.Module):
    """q/k/v fused into one matmul (+ bias for Qwen2), optional per-head q/k RMSNorm (Qwen3, Gemma 3),
    rotary from the layer's own table, a sliding window where the layer has one."""

    def __init__(self, arch: ModelArch, layer_id: int):
        super().__init__()
        self.layer_id, self.h, self.kvh, self.d = layer_id, arch.num_heads, arch.num_kv_heads, arch.head_dim
        self.qkv_proj = Linear(arch.hidden_size, (self.h + 2 * self.kvh) * self.d, bias=arch.qkv_bias)
        self.o_proj = Linear(self.h * self.d, arch.hidden_size, bias=False)
        self.scale = arch.attn_scale or 1.0 / math.sqrt(self.d)
        self.window, self.rope, self.softcap = arch.window(layer_id), arch.rope(layer_id), arch.attn_softcap
        self.q_norm = RMSNorm(self.d, arch.rms_norm_eps) if arch.qk_norm else None
        self.k_norm = RMSNorm(self.d, arch.rms_norm_eps) if arch.qk_norm else None

    def _norm_qk(self, qkv: torch.Tensor, ctx: ForwardContext) -> torch.Tensor:
        """qkv [T, (H + 2 KVH) D] -> the same with q and k RMS-normed per head over D."""
        t, hd, kd = qkv.shape[0], self.h * self.d, self.kvh * self.d
        q, k, v = qkv.split([hd, kd, kd], dim=-1)
        q = self.q_norm(q.reshape(-1, self.d), None, ctx)[0].reshape(t, hd)
        k = self.k_norm(k.reshape(-1, self.d), None, ctx)[0].reshape(t, kd)
        return torch.cat([q, k, v], dim=-1)

    def forward(self, x: torch.Tensor, ctx: ForwardContext) -> torch.Tensor:
        t = x.shape[0]
        k_pool, v_pool = ctx.k_pool[self.layer_id], ctx.v_pool[self.layer_id]
        meta = ctx.meta_for(self.window, self.softcap)
        qkv = self.qkv_proj(x)
        if self.q_norm is not None:
            qkv = self._norm_qk(qkv, ctx)
        cos, sin = ctx.rope[self.rope]
        q = ctx.ops.rope_write_kv(qkv, cos, sin, k_pool, v_pool,  # [T, H, D]
                                  meta.out_slots, self.h, ctx.backend.write_kv)
        attend = ctx.backend.decode_attention if meta.is_decode else ctx.backend.extend_attention
        out = attend(q, k_pool, v_pool, meta, self.scale)         # [T, H, D]
        return self.o_proj(out.reshape(t, self.h * self.d))


class MLP(nn.Module):
    """Gated MLP, gate and up fused: SiLU (SwiGLU) or tanh-GELU (Gemma's GeGLU)."""

    def __init__(self, arch: ModelArch):
        super().__init__()
        if arch.hidden_act not in ("silu", "gelu_tanh"):
            raise ValueError(f"MLP activation {arch.hidden_act!r} is not supported")
        self.act = arch.hidden_act
        self.gate_up_proj = Linear(arch.hidden_size, 2 * arch.intermediate_size, bias=False)
        self.down_proj = Linear(arch.intermediate_size, arch.hidden_size, bias=False)

    def forward(self, x: torch.Tensor, ctx: ForwardContext) -> torch.Tensor:
        gate_up = self.gate_up_proj(x)  # [T, 2I], gate then up
        if self.act == "silu":
            return self.down_proj(ctx.ops.silu_mul(gate_up))
        gate, up = gate_up.chunk(2, dim=-1)
        return self.down_proj(F.gelu(gate, approximate="tanh") * up)


class DecoderLayer(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then + mlp(norm(.))."""

    def __init__(self, arch: ModelArch, layer_id: int):
        super().__init__()
        self.input_layernorm = RMSNorm(arch.hidden_size, arch.rms_norm_eps)
        self.self_attn = Attention(arch, layer_id)
        self.post_attention_layernorm = RMSNorm(arch.hidden_size, arch.rms_norm_eps)
        self.mlp = MLP(arch)

    def forward(self, h: torch.Tensor, residual: torch.Tensor, ctx: ForwardContext,
                next_norm: RMSNorm) -> tuple[torch.Tensor, torch.Tensor]:
        """h: this layer's normed input [T, hidden]; residual: the stream before that norm.
        Returns `next_norm` of the stream after this layer (the next layer's input) and that stream."""
        h, residual = self.post_attention_layernorm(self.self_attn(h, ctx), residual, ctx)
        return next_norm(self.mlp(h, ctx), residual, ctx)
