"""Fused CPU versions of layer_ops for bf16 and fp32 models (cpu_layer_ops.cpp, built into the same
library as the attention kernel, see cpu.py). Same signatures as layer_ops; anything they do not
cover (another dtype or device, mixed dtypes, odd strides, the library missing) goes to the torch
reference.

Why: in a decode step of a small model the element-wise ops cost more in dispatch than in
arithmetic (RMSNorm alone is ~8 torch ops, 61 times a step). Profile at batch 4, one thread,
before fusing: 73% linear layers, ~25% element-wise ops and their dtype conversions. fp32 (dtype
auto on CPUs without AVX512-BF16 / AMX, and the quantized linears) has the same dispatch cost.
"""
from __future__ import annotations

import torch

from . import layer_ops
from .cpu import load_library
from .layer_ops import WriteKV

_MAX_HIDDEN, _MAX_D = 4096, 512  # the kernel's per-row stack buffers


_SUFFIX = {torch.bfloat16: "", torch.float32: "_f32"}  # dtype -> the C function's name suffix


def _fn(name: str, *tensors: torch.Tensor):
    """The library's `name` for the tensors' dtype (all bf16 or all fp32, on the CPU), or None.
    Runs ~120 times a decode step, so a plain loop over cheap attributes (is_cpu, dtype identity)
    rather than all() over a generator."""
    dtype = tensors[0].dtype
    for t in tensors:
        if not t.is_cpu or t.dtype is not dtype:
            return None
    suffix, lib = _SUFFIX.get(dtype), load_library()
    return None if suffix is None or lib is None else getattr(lib, name + suffix)


def add_rmsnorm(x: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor,
                eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """As layer_ops.add_rmsnorm; the residual is updated in place."""
    d = x.shape[-1]
    fn = _fn("rg_add_rmsnorm", x, weight, x if residual is None else residual)
    if not (fn is not None and d <= _MAX_HIDDEN and x.is_contiguous() and weight.is_contiguous()
            and (residual is None or residual.is_contiguous())):
        return layer_ops.add_rmsnorm(x, residual, weight, eps)
    out = torch.empty_like(x)
    fn(x.data_ptr(), 0 if residual is None else residual.data_ptr(), weight.data_ptr(), out.data_ptr(),
       x.numel() // d, d, eps, torch.get_num_threads())
    return out, (x if residual is None else residual)


def rope_write_kv(qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, k_pool: torch.Tensor,
                  v_pool: torch.Tensor, out_slots: torch.Tensor, num_heads: int,
                  write_kv: WriteKV) -> torch.Tensor:
    """As layer_ops.rope_write_kv; writes the pools itself (plain slot-indexed layout). Partial
    rotary (cos narrower than a head) takes the torch path."""
    t, d = qkv.shape[0], cos.shape[-1]
    kvh = k_pool.shape[1]
    fn = _fn("rg_rope_write_kv", qkv, cos, sin, k_pool, v_pool)
    if (fn is None and qkv.dtype is torch.float32 and k_pool.dtype is torch.bfloat16
            and _fn("rg_rope_write_kv", qkv, cos, sin) is not None and _fn("rg_rope_write_kv", k_pool, v_pool)):
        fn = load_library().rg_rope_write_kv_f32_bf16kv  # fp32 model, bf16 KV pools
    if not (fn is not None and d <= _MAX_D and d == k_pool.shape[-1] and qkv.stride(1) == 1
            and qkv.shape[1] == (num_heads + 2 * kvh) * d
            and cos.is_contiguous() and sin.is_contiguous() and k_pool.stride() == v_pool.stride()
            and k_pool.stride(2) == 1 and out_slots.dtype == torch.int64 and out_slots.is_contiguous()):
        return layer_ops.rope_write_kv(qkv, cos, sin, k_pool, v_pool, out_slots, num_heads, write_kv)
    q = torch.empty(t, num_heads, d, dtype=qkv.dtype)
    fn(qkv.data_ptr(), qkv.stride(0), cos.data_ptr(), sin.data_ptr(), out_slots.data_ptr(), q.data_ptr(),
       k_pool.data_ptr(), v_pool.data_ptr(), k_pool.stride(0), k_pool.stride(1), t, num_heads, kvh, d,
       torch.get_num_threads())
    return q


def silu_mul(gate_up: torch.Tensor) -> torch.Tensor:
    """As layer_ops.silu_mul."""
    fn = _fn("rg_silu_mul", gate_up)
    if not (fn is not None and gate_up.is_contiguous()):
        return layer_ops.silu_mul(gate_up)
    t, i = gate_up.shape[0], gate_up.shape[1] // 2
    out = torch.empty(t, i, dtype=gate_up.dtype)
    fn(gate_up.data_ptr(), out.data_ptr(), t, i, torch.get_num_threads())
    return out


def small_rows() -> int:
    """Batch rows up to which linear_small runs instead of oneDNN's prepacked matmul: 256 with AMX
    (every decode batch; faster or even at every size measured up to 1024 rows), 2 with AVX512-BF16
    only, 0 without (see cpu_linear.cpp)."""
    lib = load_library()
    return 0 if lib is None else int(lib.rg_linear_small_max_rows())


def pack_linear_small(weight: torch.Tensor) -> torch.Tensor | None:
    """bf16 W [N, K] -> the same values repacked for linear_small (see cpu_linear.cpp: tiles of 32
    outputs, k pairs interleaved), as a [N, K]-shaped buffer; None where the kernel cannot take it."""
    n, k = weight.shape
    if small_rows() == 0 or not weight.is_cpu or weight.dtype is not torch.bfloat16 or n % 32 or k % 32:
        return None
    w = weight.detach().contiguous()
    packed = torch.empty_like(w)
    load_library().rg_pack_linear_small(w.data_ptr(), packed.data_ptr(), n, k)
    return packed


def linear_small(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x: bf16 [M, K], M <= small_rows() -> bf16 [M, N] = x W^T + bias, W packed as above."""
    n, k = packed.shape
    x = x.contiguous()
    out = torch.empty(x.shape[0], n, dtype=x.dtype)
    bias_ptr = None if bias is None else bias.contiguous().data_ptr()
    load_library().rg_linear_small(x.data_ptr(), packed.data_ptr(), bias_ptr, out.data_ptr(), x.shape[0],
                                   n, k, torch.get_num_threads())
    return out
