"""Llama-family decoder (Llama, Mistral, Qwen2, SmolLM2) over flat token batches and the paged KV pool.

A forward takes T tokens from many requests at once (`input_ids`, `positions`: [T]); attention reads
and writes the shared pool through `AttnMeta` (see radixgen.kernels.meta). q/k/v and gate/up are
fused into one matmul each at load time. The element-wise work (residual add + RMSNorm, rotary +
KV write, SiLU * up) goes through `ctx.ops`: kernels.layer_ops (torch) or its fused CPU version.
The residual stream is carried beside the normed activations, vLLM-style, so each residual add is
fused with the norm that follows it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch
from torch import nn

from radixgen.kernels import AttnMeta
from radixgen.kernels import cpu_layer_ops

SUPPORTED = ("llama", "mistral", "qwen2")


@dataclass(frozen=True)
class ModelArch:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    qkv_bias: bool
    tie_word_embeddings: bool
    max_position_embeddings: int

    @classmethod
    def from_hf(cls, config: Any) -> "ModelArch":
        if config.model_type not in SUPPORTED:
            raise ValueError(f"model type {config.model_type!r} is not supported (supported: {', '.join(SUPPORTED)})")
        heads = config.num_attention_heads
        return cls(
            vocab_size=config.vocab_size, hidden_size=config.hidden_size,
            intermediate_size=config.intermediate_size, num_layers=config.num_hidden_layers,
            num_heads=heads, num_kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
            rms_norm_eps=config.rms_norm_eps,
            qkv_bias=config.model_type == "qwen2" or bool(getattr(config, "attention_bias", False)),
            tie_word_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
            max_position_embeddings=config.max_position_embeddings)


@dataclass
class ForwardContext:
    """What attention needs for one forward; passed down as an argument, never stored globally."""
    meta: AttnMeta
    k_pool: torch.Tensor      # [L, S, KVH, D]
    v_pool: torch.Tensor      # [L, S, KVH, D]
    backend: ModuleType       # write_kv / decode_attention / extend_attention
    ops: ModuleType           # add_rmsnorm / rope_write_kv / silu_mul (kernels.layer_ops or fused)
    cos: torch.Tensor | None = None  # [T, D] rotary rows of this forward's positions, model dtype
    sin: torch.Tensor | None = None


def rope_cos_sin(config: Any, head_dim: int, max_pos: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin: float32 [max_pos, head_dim], with the config's theta and scaling (via transformers)."""
    params = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    rope_type = params.get("rope_type", params.get("type", "default"))
    theta = params.get("rope_theta", getattr(config, "rope_theta", 10000.0))
    if rope_type == "default":
        inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim)
        scale = 1.0
    else:
        from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
        if rope_type not in ROPE_INIT_FUNCTIONS:
            raise ValueError(f"rope type {rope_type!r} is not supported")
        inv_freq, scale = ROPE_INIT_FUNCTIONS[rope_type](config, torch.device("cpu"))
    freqs = torch.outer(torch.arange(max_pos, dtype=torch.float32), inv_freq.float())
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos() * scale, emb.sin() * scale


def padded_rows(m: int) -> int:
    """Rows a prepacked matmul runs with. oneDNN JIT-builds a kernel per distinct shape (1-3 ms each,
    more for long prefills), so M is rounded up to 8 sizes per power of two (72 up to 2048), all
    built by `warm_up`: at most 1/8 more rows, and free for small M (decode reads the weights)."""
    if m <= 8:
        return m
    step = 1 << (m.bit_length() - 4)  # m in (2^k, 2^(k+1)] -> multiples of 2^(k-3)
    return -(-m // step) * step


class Linear(nn.Linear):
    """nn.Linear that can prepack its weight for oneDNN: bf16 matmuls on a CPU otherwise reorder the
    weight on every call, and prepacked ones ran 1.5-2x faster here. Batches of up to `small_rows`
    rows (every decode step, short prefills) go to our own AMX kernel instead, on a second packed copy
    of the weight (the price: one more bf16 copy of the model in memory, 270 MB for SmolLM2-135M)."""

    packed: torch.Tensor | None = None   # oneDNN's layout
    small: torch.Tensor | None = None    # cpu_layer_ops.linear_small's layout
    small_rows: int = 0

    def pack(self, batch_hint: int = 64) -> None:
        self.packed = torch.ops.mkldnn._reorder_linear_weight(self.weight.detach(), batch_hint)
        self.small = cpu_layer_ops.pack_linear_small(self.weight)
        self.small_rows = cpu_layer_ops.small_rows() if self.small is not None else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is None:
            return super().forward(x)
        m = x.shape[0]
        # `small` is None where our kernel cannot run (no AMX / AVX512-BF16): then small_rows is 0,
        # and a forward of 0 rows (no request wants logits) must not take that path either.
        if self.small is not None and m <= self.small_rows:
            return cpu_layer_ops.linear_small(x, self.small, self.bias)
        rows = padded_rows(m)
        if rows != m:
            x = torch.cat([x, x.new_zeros(rows - m, x.shape[1])])
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")[:m]

    def warm_up(self, max_rows: int) -> None:
        """Build the oneDNN kernels of every padded row count up to max_rows that oneDNN will run
        (prepacked only; row counts up to small_rows go to our kernel, which needs no build)."""
        if self.packed is not None:
            for m in sorted({padded_rows(m) for m in range(self.small_rows + 1, max_rows + 1)}):
                self(self.weight.new_zeros(m, self.in_features))


def can_prepack(device: torch.device, dtype: torch.dtype) -> bool:
    """oneDNN prepacks bf16 weights only with AVX512-BW/VL/DQ or AVX-NE-CONVERT; on an AVX2-only CPU
    (many AMD and older Intel parts) its reorder raises, and plain nn.Linear is the path."""
    return device.type == "cpu" and dtype == torch.bfloat16 and torch.backends.mkldnn.is_available() \
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight") and torch.ops.mkldnn._is_mkldnn_bf16_supported()


class RMSNorm(nn.Module):
    """Holds the weight; the math is ctx.ops.add_rmsnorm, fused with the residual add before it."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(dim)), eps

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None,
                ctx: ForwardContext) -> tuple[torch.Tensor, torch.Tensor]:
        """(normed residual + x, residual + x); residual None means x is the residual stream."""
        return ctx.ops.add_rmsnorm(x, residual, self.weight, self.eps)


class Attention(nn.Module):
    def __init__(self, arch: ModelArch, layer_id: int):
        super().__init__()
        self.layer_id, self.h, self.kvh, self.d = layer_id, arch.num_heads, arch.num_kv_heads, arch.head_dim
        self.qkv_proj = Linear(arch.hidden_size, (self.h + 2 * self.kvh) * self.d, bias=arch.qkv_bias)
        self.o_proj = Linear(self.h * self.d, arch.hidden_size, bias=False)
        self.scale = 1.0 / math.sqrt(self.d)

    def forward(self, x: torch.Tensor, ctx: ForwardContext) -> torch.Tensor:
        t = x.shape[0]
        k_pool, v_pool = ctx.k_pool[self.layer_id], ctx.v_pool[self.layer_id]
        q = ctx.ops.rope_write_kv(self.qkv_proj(x), ctx.cos, ctx.sin, k_pool, v_pool,  # [T, H, D]
                                  ctx.meta.out_slots, self.h, ctx.backend.write_kv)
        attend = ctx.backend.decode_attention if ctx.meta.is_decode else ctx.backend.extend_attention
        out = attend(q, k_pool, v_pool, ctx.meta, self.scale)         # [T, H, D]
        return self.o_proj(out.reshape(t, self.h * self.d))


class MLP(nn.Module):
    def __init__(self, arch: ModelArch):
        super().__init__()
        self.gate_up_proj = Linear(arch.hidden_size, 2 * arch.intermediate_size, bias=False)
        self.down_proj = Linear(arch.intermediate_size, arch.hidden_size, bias=False)

    def forward(self, x: torch.Tensor, ctx: ForwardContext) -> torch.Tensor:
        return self.down_proj(ctx.ops.silu_mul(self.gate_up_proj(x)))


class DecoderLayer(nn.Module):
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


class LlamaForCausalLM(nn.Module):
    def __init__(self, arch: ModelArch, hf_config: Any, max_pos: int):
        super().__init__()
        self.arch = arch
        self.embed_tokens = nn.Embedding(arch.vocab_size, arch.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(arch, i) for i in range(arch.num_layers))
        self.norm = RMSNorm(arch.hidden_size, arch.rms_norm_eps)
        self.lm_head = Linear(arch.hidden_size, arch.vocab_size, bias=False)
        cos, sin = rope_cos_sin(hf_config, arch.head_dim, max_pos)
        self.register_buffer("cos", cos, persistent=False)  # [max_pos, D], cast with the model
        self.register_buffer("sin", sin, persistent=False)

    @torch.inference_mode()
    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, ctx: ForwardContext) -> torch.Tensor:
        """input_ids, positions: int64 [T] -> final hidden states [T, hidden]."""
        ctx.cos, ctx.sin = self.cos[positions], self.sin[positions]  # [T, D]
        h, residual = self.layers[0].input_layernorm(self.embed_tokens(input_ids), None, ctx)
        norms = [layer.input_layernorm for layer in self.layers[1:]] + [self.norm]
        for layer, next_norm in zip(self.layers, norms):
            h, residual = layer(h, residual, ctx, next_norm)
        return h

    @torch.inference_mode()
    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [N, hidden] -> logits [N, vocab] in the model dtype (the engine upcasts only when it
        needs more than an argmax: converting a bf16 batch of logits to fp32 cost as much as 30
        RMSNorms)."""
        return self.lm_head(hidden)

    def prepack(self) -> None:
        """Prepack every linear weight for oneDNN (bf16 on a CPU); a no-op elsewhere."""
        if can_prepack(self.embed_tokens.weight.device, self.embed_tokens.weight.dtype):
            for module in self.modules():
                if isinstance(module, Linear):
                    module.pack()

    def quantize(self, mode: str, blocks: dict | None = None) -> list[str]:
        """Swap the Linears for quantized ones; returns what was swapped, for the start-up log.
        "none" leaves the model as it is. "block": auto / int8 / int4 over our block kernels
        (models/block_quant.py; `blocks`: the GGUF's own, by HF name). Otherwise PyTorch's kernels
        (models/quant.py): with int4 the LM head gets int8, as GGUF files keep it at 8 bits (int4
        lost 13 points of top-1 agreement); the embedding table stays float."""
        if mode == "none":
            return []
        if mode.startswith("block:"):
            from .block_quant import quantize_model
            return quantize_model(self, mode.removeprefix("block:"), blocks or {}, self.arch.tie_word_embeddings)
        from .quant import QuantLinear
        for parent in list(self.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, Linear):
                    head_mode = "int8" if mode == "int4" and child is self.lm_head else mode
                    setattr(parent, name, QuantLinear(child.weight, child.bias, head_mode))
        return [f"all linears {mode} (torch kernels)"]

    def warm_up(self, max_tokens: int, max_requests: int) -> None:
        """Build every matmul kernel a forward of up to max_tokens rows (logits for up to
        max_requests) will use, so no request pays for it (see padded_rows). Layers share shapes."""
        first = self.layers[0]
        for linear in (first.self_attn.qkv_proj, first.self_attn.o_proj, first.mlp.gate_up_proj,
                       first.mlp.down_proj):
            linear.warm_up(max_tokens)
        self.lm_head.warm_up(max_requests)

    def load_hf_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Map transformers' parameter names onto ours, fusing q/k/v and gate/up."""
        own: dict[str, torch.Tensor] = {}
        get = lambda name: _take(state, name)  # noqa: E731
        own["embed_tokens.weight"] = get("model.embed_tokens.weight")
        own["norm.weight"] = get("model.norm.weight")
        head = state.get("lm_head.weight")
        own["lm_head.weight"] = own["embed_tokens.weight"] if head is None or self.arch.tie_word_embeddings else head
        for i in range(self.arch.num_layers):
            p, o = f"model.layers.{i}.", f"layers.{i}."
            own[o + "self_attn.qkv_proj.weight"] = torch.cat([get(p + f"self_attn.{n}_proj.weight") for n in "qkv"])
            if self.arch.qkv_bias:
                own[o + "self_attn.qkv_proj.bias"] = torch.cat([get(p + f"self_attn.{n}_proj.bias") for n in "qkv"])
            own[o + "self_attn.o_proj.weight"] = get(p + "self_attn.o_proj.weight")
            own[o + "mlp.gate_up_proj.weight"] = torch.cat([get(p + "mlp.gate_proj.weight"), get(p + "mlp.up_proj.weight")])
            own[o + "mlp.down_proj.weight"] = get(p + "mlp.down_proj.weight")
            own[o + "input_layernorm.weight"] = get(p + "input_layernorm.weight")
            own[o + "post_attention_layernorm.weight"] = get(p + "post_attention_layernorm.weight")
        missing, unexpected = self.load_state_dict(own, strict=False)
        missing = [m for m in missing if m not in ("cos", "sin")]
        if missing or unexpected:
            raise ValueError(f"weights do not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
        if self.arch.tie_word_embeddings or head is None:
            self.lm_head.weight = self.embed_tokens.weight


def _take(state: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    if name not in state:
        raise ValueError(f"weights file lacks tensor {name!r}")
    return state[name]
