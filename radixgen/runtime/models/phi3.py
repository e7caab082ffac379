"""Phi-3 / Phi-3.5 / Phi-4-mini: Llama's layers, with q/k/v and gate/up already fused in the
checkpoint (qkv_proj, gate_up_proj: the same layouts as ours, copied as they are), a sliding window
on every layer where the config sets one, `longrope` (the 128k models: short / long factors switched
at original_max_position_embeddings, see rotary.py and KVManager) and partial rotary (Phi-4-mini
rotates the first partial_rotary_factor of each head)."""
from __future__ import annotations

from typing import Any

import torch

from .arch import ModelArch, base_arch, layer_windows, refuse
from .llama import LlamaForCausalLM
from .rotary import check_rope, longrope_switch_len


def phi3_arch(config: Any) -> ModelArch:
    check_rope(config, longrope=True, partial=True)
    if getattr(config, "hidden_act", "silu") != "silu":
        refuse(config, f"hidden_act {config.hidden_act!r}")
    return base_arch(config, layer_windows=layer_windows(config), rope_switch_len=longrope_switch_len(config))


class Phi3ForCausalLM(LlamaForCausalLM):
    def layer_weights(self, get: Any, p: str) -> dict[str, torch.Tensor]:
        return {"self_attn.qkv_proj.weight": get(p + "self_attn.qkv_proj.weight"),
                "self_attn.o_proj.weight": get(p + "self_attn.o_proj.weight"),
                "mlp.gate_up_proj.weight": get(p + "mlp.gate_up_proj.weight"),
                "mlp.down_proj.weight": get(p + "mlp.down_proj.weight"),
                "input_layernorm.weight": get(p + "input_layernorm.weight"),
                "post_attention_layernorm.weight": get(p + "post_attention_layernorm.weight")}
