"""Attention over the paged KV pool and grammar-mask application: Triton kernels (CUDA), a fast
C++ CPU path, and the plain-torch reference they are all tested against. Each backend is a module
with the same five functions: write_kv, decode_attention, extend_attention, apply_token_bitmask and
argmax (the logits ops the sampler needs).
The element-wise layer ops (layer_ops: residual + RMSNorm, rotary + KV write, SiLU * up) have a
torch version and a fused CPU one with the same functions."""
from __future__ import annotations

import importlib
from types import ModuleType

import torch

from . import cpu, cpu_layer_ops, layer_ops, reference
from .meta import AttnMeta

__all__ = ["AttnMeta", "BACKENDS", "cpu", "get_backend", "get_layer_ops", "reference"]

BACKENDS = ("auto", "reference", "cpu", "triton")


def get_backend(device: torch.device | str, prefer: str = "auto") -> ModuleType:
    """The attention module for `device`: "auto" picks Triton on CUDA and the C++ kernel on the CPU
    (the torch reference where that kernel cannot be built); a name forces that backend."""
    if prefer not in BACKENDS:
        raise ValueError(f"unknown attention backend {prefer!r}; choose one of {', '.join(BACKENDS)}")
    device = torch.device(device)
    if prefer == "auto":
        prefer = "triton" if device.type == "cuda" else "cpu" if device.type == "cpu" else "reference"
    if prefer == "reference":
        return reference
    if prefer == "cpu":
        if device.type != "cpu":
            raise ValueError(f"the 'cpu' attention backend runs on the CPU, not on {device}")
        return cpu if cpu.is_available() else reference  # is_available warned once already
    try:  # triton is an optional dependency (the `gpu` extra)
        return importlib.import_module(".triton_attention", __name__)
    except ImportError as err:
        raise ValueError(f"the 'triton' attention backend needs the triton package ({err})") from err


def get_layer_ops(backend: ModuleType) -> ModuleType:
    """The element-wise layer ops that go with an attention backend: fused C++ beside the CPU
    kernel (it falls back to torch by itself for dtypes other than bf16), torch otherwise."""
    return cpu_layer_ops if backend is cpu else layer_ops
