"""A Llama-family decoder stack over block-quantized weights in one C++ call (cpu_quant_stack.cpp),
for decode steps (any batch) and forwards of a few rows.

Why: at batch 1 the quantized linears read 4-8x fewer bytes than fp32 ones, and the ~300 small
Python-side calls around them (norms, rotary, attention, module dispatch) became half the step.
`QuantStack` holds the layers' weights as a table of pointers built once; `run` hands the
embeddings and the step's attention layout to the library, which runs every layer back to back
with the same kernels, in the same order, as the Python path: the two agree bit for bit
(tests/runtime/test_quant_stack.py).
"""
from __future__ import annotations

import ctypes
import functools
from dataclasses import dataclass
from types import ModuleType

import torch

from . import cpu
from .cpu import load_library
from .cpu_quant import FORMATS, BlockWeight, PanelWeight
from .meta import AttnMeta

_i64, _int, _ptr, _f32 = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p, ctypes.c_float
_MAX_D, _MAX_GROUP = 256, 64  # the attention kernel's limits (head dim, query heads per kv head)
_POOL_DTYPES = {torch.float32: 0, torch.bfloat16: 1}  # KV pools the kernel takes (bf16: kv_cache_dtype)


@dataclass(frozen=True)
class StackLayer:
    in_norm: torch.Tensor       # fp32 [hidden] (Gemma-style offsets already added)
    post_norm: torch.Tensor     # fp32 [hidden]
    # The linears' weights: all panels (cpu_quant_panel.cpp's kernel) or all blocks (scalar=True)
    qkv: BlockWeight | PanelWeight  # [(H + 2 KVH) D, hidden]
    qkv_bias: torch.Tensor | None   # fp32 [(H + 2 KVH) D]
    o: BlockWeight | PanelWeight    # [hidden, H D]
    gate_up: BlockWeight | PanelWeight  # [2 I, hidden], gate rows then up rows
    down: BlockWeight | PanelWeight     # [hidden, I]


@functools.lru_cache(maxsize=1)
def _lib() -> ctypes.CDLL | None:
    lib = load_library()
    if lib is None:
        return None
    lib.rg_quant_stack.restype = _int
    lib.rg_quant_stack.argtypes = [_ptr, _i64, _ptr, _ptr, _ptr, _f32, _ptr, _ptr, _ptr, _int, _ptr, _ptr,
                                   _i64, _i64, _i64, _ptr, _i64, _ptr, _ptr, _ptr, _i64, _i64,
                                   _i64, _i64, _i64, _i64, _i64, _i64, _f32, _int, _int]
    return lib


def _linear_words(w: BlockWeight | PanelWeight, bias: torch.Tensor | None) -> list[int]:
    n, k = w.shape
    quants = w.qs if isinstance(w, BlockWeight) else w.q
    return [FORMATS[w.fmt], quants.data_ptr(), w.d.data_ptr(), 0 if w.m is None else w.m.data_ptr(),
            0 if bias is None else bias.data_ptr(), n, k]


class QuantStack:
    """The decoder layers of one model as the kernel's table. The tensors stay referenced here, so
    the pointers stay valid for as long as the stack lives."""

    def __init__(self, layers: list[StackLayer], final_norm: torch.Tensor, eps: float, num_heads: int,
                 num_kv_heads: int, head_dim: int, sm_scale: float, scalar: bool = False):
        self.layers = [StackLayer(l.in_norm.float().contiguous(), l.post_norm.float().contiguous(), l.qkv,
                                  None if l.qkv_bias is None else l.qkv_bias.float().contiguous(),
                                  l.o, l.gate_up, l.down) for l in layers]
        self.final_norm = final_norm.float().contiguous()
        self.eps, self.sm_scale, self.scalar = eps, sm_scale, scalar
        self.h, self.kvh, self.d = num_heads, num_kv_heads, head_dim
        self.hidden = self.final_norm.numel()
        self.inter = layers[0].down.shape[1]
        rows = [[l.in_norm.data_ptr(), l.post_norm.data_ptr(), *_linear_words(l.qkv, l.qkv_bias),
                 *_linear_words(l.o, None), *_linear_words(l.gate_up, None), *_linear_words(l.down, None)]
                for l in self.layers]
        self.table = torch.tensor(rows, dtype=torch.int64)  # [L, 30]

    def supports(self, backend: ModuleType, x: torch.Tensor, cos: torch.Tensor, k_pool: torch.Tensor,
                 v_pool: torch.Tensor, meta: AttnMeta) -> bool:
        """Whether `run` can take this forward (else the caller runs the layers one by one): the
        C++ attention backend is the one chosen, and the shapes are within its limits."""
        return (backend is cpu and _lib() is not None and x.dtype is torch.float32 and x.is_cpu
                and cos.shape[-1] == self.d and cos.dtype is torch.float32  # full rotary only
                and k_pool.dtype in _POOL_DTYPES and k_pool.is_cpu and v_pool.dtype is k_pool.dtype
                and k_pool.stride() == v_pool.stride() and k_pool.stride(3) == 1 and k_pool.shape[2] == self.kvh
                and self.d <= _MAX_D and self.h // self.kvh <= _MAX_GROUP and meta.window == 0
                and meta.softcap == 0.0 and meta.out_slots.dtype is torch.int64)

    def run(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, k_pool: torch.Tensor,
            v_pool: torch.Tensor, meta: AttnMeta) -> torch.Tensor:
        """x: fp32 [T, hidden] embeddings; cos, sin: fp32 [T, D] rows of this forward's positions;
        pools fp32 or bf16 [L, S, KVH, D]. Writes the new tokens' K/V; returns the final normed hidden
        states, fp32 [T, hidden]."""
        t = x.shape[0]
        stream = x.contiguous().clone()  # the residual stream, overwritten by the kernel
        out = torch.empty(t, self.hidden, dtype=torch.float32)
        cos, sin, slots = cos.contiguous(), sin.contiguous(), meta.out_slots.contiguous()
        table, rows, prefix, extend = meta.c_args
        rc = _lib().rg_quant_stack(
            self.table.data_ptr(), len(self.layers), stream.data_ptr(), out.data_ptr(), self.final_norm.data_ptr(),
            self.eps, cos.data_ptr(), sin.data_ptr(), slots.data_ptr(), _POOL_DTYPES[k_pool.dtype],
            k_pool.data_ptr(), v_pool.data_ptr(),
            k_pool.stride(0), k_pool.stride(1), k_pool.stride(2), table.data_ptr(), table.stride(0),
            rows.data_ptr(), prefix.data_ptr(), extend.data_ptr(), rows.numel(), meta.max_seq, t, self.hidden,
            self.inter, self.h, self.kvh, self.d, self.sm_scale, int(self.scalar), torch.get_num_threads())
        if rc != 0:
            raise RuntimeError("rg_quant_stack refused a shape that supports() accepted")
        return out
