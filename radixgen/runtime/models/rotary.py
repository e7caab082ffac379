"""Rotary tables: cos / sin rows per position, computed once per context length.

Static rope types only: a table whose frequencies depend on the sequence length being decoded
(`dynamic`, Phi-3's `longrope`) cannot be one table, and is refused by `check_rope` when the model
loads, naming the type. `layer_type` picks one of a config's per-layer rope settings (Gemma 3's
`sliding_attention` / `full_attention`).
"""
from __future__ import annotations

from typing import Any

import torch

# Rope types computed by a table of fixed frequencies, and tested against transformers.
STATIC_ROPE_TYPES = ("default", "linear", "llama3")


def rope_params(config: Any, layer_type: str | None = None) -> dict[str, Any]:
    """The config's rope settings (transformers 5's `rope_parameters`, or the older `rope_scaling`)."""
    params = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    if layer_type is not None:
        params = dict(params.get(layer_type) or {})
    return params


def check_rope(config: Any, layer_type: str | None = None) -> None:
    """Refuse, naming it, a rope type or a partial rotary factor that our tables do not compute."""
    params = rope_params(config, layer_type)
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type not in STATIC_ROPE_TYPES:
        raise ValueError(f"{config.model_type}: rope_scaling type {rope_type!r} is not supported "
                         f"(supported: {', '.join(STATIC_ROPE_TYPES)})")
    factor = params.get("partial_rotary_factor", getattr(config, "partial_rotary_factor", 1.0)) or 1.0
    if factor != 1.0:
        raise ValueError(f"{config.model_type}: partial rotary embeddings (partial_rotary_factor={factor}) "
                         "are not supported")


def rope_cos_sin(config: Any, head_dim: int, max_pos: int,
                 layer_type: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin: float32 [max_pos, head_dim], with the config's theta and scaling (via transformers)."""
    params = rope_params(config, layer_type)
    rope_type = params.get("rope_type", params.get("type", "default"))
    theta = params.get("rope_theta", getattr(config, "rope_theta", 10000.0))
    if rope_type == "default":
        inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim)
        scale = 1.0
    else:
        from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
        if rope_type not in ROPE_INIT_FUNCTIONS:
            raise ValueError(f"rope type {rope_type!r} is not supported")
        kwargs = {"layer_type": layer_type} if layer_type is not None else {}
        inv_freq, scale = ROPE_INIT_FUNCTIONS[rope_type](config, torch.device("cpu"), **kwargs)
    freqs = torch.outer(torch.arange(max_pos, dtype=torch.float32), inv_freq.float())
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos() * scale, emb.sin() * scale
