"""Qwen2 / Qwen2.5 (bias on q, k, v) and Qwen3 (per-head q/k RMSNorm, no bias, explicit head_dim):
Llama's layers with those switches (see LlamaForCausalLM). Their optional sliding window
(use_sliding_window, off in the released models) runs on the layers config.layer_types names."""
from __future__ import annotations

from typing import Any

from .arch import ModelArch, base_arch, layer_windows, refuse
from .rotary import check_rope


def _qwen_arch(config: Any, **overrides: Any) -> ModelArch:
    check_rope(config)
    if getattr(config, "hidden_act", "silu") != "silu":
        refuse(config, f"hidden_act {config.hidden_act!r}")
    return base_arch(config, layer_windows=layer_windows(config), **overrides)


def qwen2_arch(config: Any) -> ModelArch:
    return _qwen_arch(config, qkv_bias=True)


def qwen3_arch(config: Any) -> ModelArch:
    return _qwen_arch(config, qk_norm=True)
