"""Llama and the decoders built like it (SmolLM2, Llama 3.x, Mistral, Qwen2/3, Phi-3 share this
class; Gemma 3 subclasses it). The layers live in layers.py, the registry in registry.py.

A forward takes T tokens from many requests at once (`input_ids`, `positions`: [T]); attention reads
and writes the shared pool through `AttnMeta` (see radixgen.kernels.meta). q/k/v and gate/up are
fused into one matmul each at load time.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from .arch import ModelArch, base_arch, refuse
from .block_quant import QUANT_MAX_ROWS
from .layers import DecoderLayer, ForwardContext, RMSNorm
from .linear import Linear, can_prepack, padded_rows
from .rotary import check_rope, rope_cos_sin

__all__ = ["Linear", "can_prepack", "padded_rows", "ForwardContext", "ModelArch", "rope_cos_sin",
           "LlamaForCausalLM", "llama_arch"]


def llama_arch(config: Any) -> ModelArch:
    """Llama 1-3.x (default, linear or llama3 rope scaling), SmolLM2; bias only where attention_bias."""
    check_rope(config)
    if getattr(config, "mlp_bias", False):
        refuse(config, "mlp_bias")
    if getattr(config, "hidden_act", "silu") != "silu":
        refuse(config, f"hidden_act {config.hidden_act!r}")
    return base_arch(config)


class LlamaForCausalLM(nn.Module):
    layer_class: type[nn.Module] = DecoderLayer
    per_layer_rope = False  # the config's rope settings are keyed by layer type (Gemma 3)
    decode_stack = None  # QuantStack: every layer in one kernel call for decode steps and small forwards (see prepack)

    def __init__(self, arch: ModelArch, hf_config: Any, max_pos: int):
        super().__init__()
        self.arch = arch
        self.embed_tokens = nn.Embedding(arch.vocab_size, arch.hidden_size)
        self.layers = nn.ModuleList(self.layer_class(arch, i) for i in range(arch.num_layers))
        self.norm = RMSNorm(arch.hidden_size, arch.rms_norm_eps)
        self.lm_head = Linear(arch.hidden_size, arch.vocab_size, bias=False)
        # Rotary tables [max_pos, D] per table name, cast with the model; filled by set_rope (they are
        # computed outside any meta-device context: transformers' rope functions cannot run on meta).
        self.rope_names = sorted({arch.rope(i) for i in range(arch.num_layers)})
        for name in self.rope_names:
            self.register_buffer(f"cos_{name}", torch.zeros(max_pos, arch.head_dim), persistent=False)
            self.register_buffer(f"sin_{name}", torch.zeros(max_pos, arch.head_dim), persistent=False)

    def set_rope(self, hf_config: Any, max_pos: int) -> None:
        """Compute the rotary tables for positions 0 .. max_pos - 1 (float32; cast with the model)."""
        for name in self.rope_names:
            layer_type = name if self.per_layer_rope else None
            cos, sin = rope_cos_sin(hf_config, self.arch.head_dim, max_pos, layer_type)
            setattr(self, f"cos_{name}", cos)
            setattr(self, f"sin_{name}", sin)

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.embed_tokens(input_ids)  # [T, hidden]
        return x if self.arch.embed_scale == 1.0 else x * torch.tensor(self.arch.embed_scale, dtype=x.dtype)

    @torch.inference_mode()
    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, ctx: ForwardContext) -> torch.Tensor:
        """input_ids, positions: int64 [T] -> final hidden states [T, hidden]."""
        rows = positions
        if ctx.rope_long is not None:  # long-rope tables stack the long rows after the short ones
            rows = positions + ctx.rope_long.long() * (getattr(self, f"cos_{self.rope_names[0]}").shape[0] // 2)
        ctx.rope = {name: (getattr(self, f"cos_{name}")[rows], getattr(self, f"sin_{name}")[rows])
                    for name in self.rope_names}  # [T, R] each
        x = self.embed(input_ids)  # [T, hidden]
        stack = self.decode_stack
        if stack is not None and (input_ids.numel() <= QUANT_MAX_ROWS or ctx.meta.is_decode):
            cos, sin = ctx.rope[self.rope_names[0]]
            if stack.supports(ctx.backend, x, cos, ctx.k_pool, ctx.v_pool, ctx.meta):
                return stack.run(x, cos, sin, ctx.k_pool, ctx.v_pool, ctx.meta)
        h, residual = self.layers[0].input_layernorm(x, None, ctx)
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
        """Prepack every linear weight for oneDNN (bf16 on a CPU); with every linear block-quantized,
        build the one-call decoder stack over them (see block_quant.decode_stack)."""
        if can_prepack(self.embed_tokens.weight.device, self.embed_tokens.weight.dtype):
            for module in self.modules():
                if isinstance(module, Linear):
                    module.pack()
        if self.embed_tokens.weight.device.type == "cpu":
            from .block_quant import decode_stack
            self.decode_stack = decode_stack(self)

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

    def layer_weights(self, get: Any, p: str) -> dict[str, torch.Tensor]:
        """One layer's tensors under our names (relative to the layer) from transformers' names under
        prefix p, fusing q/k/v and gate/up. Families that name or fuse them otherwise override this."""
        own = {"self_attn.qkv_proj.weight": torch.cat([get(p + f"self_attn.{n}_proj.weight") for n in "qkv"]),
               "self_attn.o_proj.weight": get(p + "self_attn.o_proj.weight"),
               "mlp.gate_up_proj.weight": torch.cat([get(p + "mlp.gate_proj.weight"), get(p + "mlp.up_proj.weight")]),
               "mlp.down_proj.weight": get(p + "mlp.down_proj.weight"),
               "input_layernorm.weight": get(p + "input_layernorm.weight"),
               "post_attention_layernorm.weight": get(p + "post_attention_layernorm.weight")}
        if self.arch.qkv_bias:
            own["self_attn.qkv_proj.bias"] = torch.cat([get(p + f"self_attn.{n}_proj.bias") for n in "qkv"])
        if self.arch.qk_norm:
            own["self_attn.q_norm.weight"] = get(p + "self_attn.q_norm.weight")
            own["self_attn.k_norm.weight"] = get(p + "self_attn.k_norm.weight")
        return own

    def load_hf_state_dict(self, state: dict[str, torch.Tensor], shard: Callable[[dict], dict] | None = None) -> None:
        """Map transformers' parameter names onto ours (see layer_weights); `shard` maps those full
        tensors to one tensor-parallel rank's (runtime/tp/shard.py)."""
        own: dict[str, torch.Tensor] = {}
        get = lambda name: _take(state, name)  # noqa: E731
        own["embed_tokens.weight"] = get("model.embed_tokens.weight")
        own["norm.weight"] = get("model.norm.weight")
        head = state.get("lm_head.weight")
        own["lm_head.weight"] = own["embed_tokens.weight"] if head is None or self.arch.tie_word_embeddings else head
        for i in range(self.arch.num_layers):
            own.update({f"layers.{i}.{k}": v for k, v in self.layer_weights(get, f"model.layers.{i}.").items()})
        if shard is not None:
            own = shard(own)
        missing, unexpected = self.load_state_dict(own, strict=False)
        missing = [m for m in missing if not m.startswith(("cos_", "sin_"))]
        if missing or unexpected:
            raise ValueError(f"weights do not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
        if self.arch.norm_offset:  # Gemma's norms scale by (1 + w): store 1 + w, the ops multiply by it
            with torch.no_grad():
                for module in self.modules():
                    if isinstance(module, RMSNorm):
                        module.weight += self.arch.norm_offset
        if self.arch.tie_word_embeddings or head is None:
            self.lm_head.weight = self.embed_tokens.weight


def _take(state: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    if name not in state:
        raise ValueError(f"weights file lacks tensor {name!r}")
    return state[name]
