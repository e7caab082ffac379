"""Rotary tables: cos / sin rows per position, computed once per context length.

Tables are [max_pos, R], R = the rotated part of a head (head_dim, or head_dim * partial_rotary_factor:
Phi-4-mini rotates the first 3/4 of each head and passes the rest through). Static rope types are
one table. Phi-3's `longrope` is two: short factors for sequences up to original_max_position_embeddings
(N), long factors past it, both scaled by the same attention factor; the model stacks them
([2 * max_pos, R], long rows after the short ones) and each request picks its half (see
`longrope_switch_len` and KVManager). `dynamic` rope (frequencies that follow the decoded length
continuously) is refused by `check_rope`, naming the type. `layer_type` picks one of a config's
per-layer rope settings (Gemma 3's `sliding_attention` / `full_attention`).
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


def _rope_type(params: dict[str, Any]) -> str:
    return params.get("rope_type", params.get("type", "default"))


def _partial_factor(config: Any, params: dict[str, Any]) -> float:
    return float(params.get("partial_rotary_factor", getattr(config, "partial_rotary_factor", 1.0)) or 1.0)


def check_rope(config: Any, layer_type: str | None = None, *, longrope: bool = False,
               partial: bool = False) -> None:
    """Refuse, naming it, a rope type or a partial rotary factor that our tables do not compute, or
    that the family does not take (`longrope`, `partial`: Phi-3's, whose attention slices heads)."""
    params = rope_params(config, layer_type)
    rope_type = _rope_type(params)
    allowed = STATIC_ROPE_TYPES + (("longrope",) if longrope else ())
    if rope_type not in allowed:
        raise ValueError(f"{config.model_type}: rope_scaling type {rope_type!r} is not supported "
                         f"(supported: {', '.join(allowed)})")
    factor = _partial_factor(config, params)
    if factor != 1.0 and not partial:
        raise ValueError(f"{config.model_type}: partial rotary embeddings (partial_rotary_factor={factor}) "
                         "are not supported")


def longrope_switch_len(config: Any) -> int:
    """N for a `longrope` config (a sequence longer than N takes the long factors), else 0."""
    params = rope_params(config)
    if _rope_type(params) != "longrope":
        return 0
    return int(params.get("original_max_position_embeddings")
               or getattr(config, "original_max_position_embeddings", None) or config.max_position_embeddings)


def _inv_freq(config: Any, head_dim: int, layer_type: str | None,
              seq_len: int | None) -> tuple[torch.Tensor, float]:
    """inv_freq [R / 2] and the attention factor cos / sin are scaled by, as transformers computes them."""
    params = rope_params(config, layer_type)
    rope_type = _rope_type(params)
    if rope_type == "default":
        theta = params.get("rope_theta", getattr(config, "rope_theta", 10000.0))
        dim = int(head_dim * _partial_factor(config, params))
        return 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim), 1.0
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    if rope_type not in ROPE_INIT_FUNCTIONS:
        raise ValueError(f"rope type {rope_type!r} is not supported")
    kwargs: dict[str, Any] = {"layer_type": layer_type} if layer_type is not None else {}
    if seq_len is not None:
        kwargs["seq_len"] = seq_len
    inv_freq, scale = ROPE_INIT_FUNCTIONS[rope_type](config, torch.device("cpu"), **kwargs)
    return inv_freq, scale


def rope_cos_sin(config: Any, head_dim: int, max_pos: int,
                 layer_type: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin: float32 [max_pos, R] with the config's theta and scaling (via transformers); for
    longrope [2 * max_pos, R], the short factors' rows then the long factors' ones."""
    switch = longrope_switch_len(config) if layer_type is None else 0
    # transformers picks the long factors for seq_len > N; seq_len=None gives the short ones
    lens = [None, switch + 1] if switch else [None]
    positions = torch.arange(max_pos, dtype=torch.float32)
    cos, sin = [], []
    for seq_len in lens:
        inv_freq, scale = _inv_freq(config, head_dim, layer_type, seq_len)
        freqs = torch.outer(positions, inv_freq.float())
        emb = torch.cat((freqs, freqs), dim=-1)
        cos.append(emb.cos() * scale)
        sin.append(emb.sin() * scale)
    return torch.cat(cos), torch.cat(sin)
