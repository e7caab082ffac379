"""Mistral: Llama's layers with a sliding window on every layer (config.sliding_window; None = off).
The window is honoured by every attention path (kernels: AttnMeta.window)."""
from __future__ import annotations

from typing import Any

from .arch import ModelArch, layer_windows, replace
from .llama import llama_arch


def mistral_arch(config: Any) -> ModelArch:
    return replace(llama_arch(config), layer_windows=layer_windows(config))
