"""Gemma 2 (model_type gemma2): Gemma 3's layers without the per-head q/k norms and with one rope
for every layer: (1 + w) RMSNorms, embeddings scaled by sqrt(hidden), GeGLU, norms before and after
both attention and the MLP, softmax scale query_pre_attn_scalar^-1/2, sliding-window and global
layers alternating (config.layer_types), attention scores soft-capped in every layer
(attn_logit_softcapping: cap * tanh(s / cap) before the softmax, honoured by every attention
backend through AttnMeta.softcap) and the final logits soft-capped (final_logit_softcapping)."""
from __future__ import annotations

import math
from typing import Any

from .arch import FULL_ROPE, LOCAL_ROPE, ModelArch, base_arch, layer_windows, refuse
from .gemma3 import Gemma3ForCausalLM
from .rotary import check_rope


def gemma2_arch(config: Any) -> ModelArch:
    check_rope(config)
    if getattr(config, "hidden_activation", "gelu_pytorch_tanh") != "gelu_pytorch_tanh":
        refuse(config, f"hidden_activation {config.hidden_activation!r}")
    if getattr(config, "use_bidirectional_attention", False):
        refuse(config, "bidirectional attention (use_bidirectional_attention)")
    if any(t not in (FULL_ROPE, LOCAL_ROPE) for t in config.layer_types):
        refuse(config, f"layer types {sorted(set(config.layer_types))}")
    return base_arch(config, attn_scale=config.query_pre_attn_scalar ** -0.5, hidden_act="gelu_tanh",
                     embed_scale=math.sqrt(config.hidden_size), norm_offset=1.0,
                     layer_windows=layer_windows(config),
                     attn_softcap=float(getattr(config, "attn_logit_softcapping", None) or 0.0))


class Gemma2ForCausalLM(Gemma3ForCausalLM):
    """Gemma 3's layer order and final soft-capping; one rotary table (no per-layer-type rope)."""
    per_layer_rope = False
