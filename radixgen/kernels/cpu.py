"""Fast CPU attention: the same four functions as `reference`, backed by a small C++ kernel.

The kernel (cpu_attention.cpp) streams each request's K/V straight from the pool through its slot
table with an online softmax, so decode reads the cache once instead of gathering a padded copy.
It is plain C++ with OpenMP (AVX-512 / AVX512-BF16 paths where the CPU has them), compiled once per
machine with the system's g++ into ~/.cache/radixgen/cpu_kernels (a few seconds, no torch headers
or ninja needed) and called through ctypes. If it cannot be built, every function falls back to
the torch reference with one warning.
Long extends (prefill) use torch's fused SDPA kernel, which wins once enough new tokens share each
key: K/V are gathered by the kernel (much faster than index_select), and a prefill with no cached
prefix uses SDPA's causal flag instead of a mask, so fully masked key blocks are skipped. SDPA
cannot soft-cap scores: soft-capped layers (Gemma 2) stream every extend through the kernel.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import subprocess
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from . import reference
from .meta import AttnMeta

write_kv = reference.write_kv

_HERE = Path(__file__).parent
# One library: attention here; fused layer ops and small-batch linears (cpu_layer_ops.py); logit ops;
# block-quantized linears (few rows; many rows in panels) and the decoder stack over them (cpu_quant.py,
# cpu_quant_stack.py).
_SOURCES = [_HERE / f"{name}.cpp" for name in
            ("cpu_attention", "cpu_layer_ops", "cpu_linear", "cpu_logits", "cpu_quant", "cpu_quant_panel",
             "cpu_quant_stack")]
# Reassociating float sums lets the dot products reduce as trees; infinities stay IEEE (masking).
_FLAGS = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c++17", "-fno-math-errno",
          "-fassociative-math", "-fno-signed-zeros", "-fno-trapping-math"]
_POOL_DTYPES = {torch.float32: 0, torch.bfloat16: 1}
_MAX_D, _MAX_ROWS = 256, 64      # the kernel's fixed per-task buffers (see MAX_D, MAX_ROWS there)
# Extends up to this many new tokens per request stream through the kernel; longer ones go to SDPA.
# 63 requests after a 22-token prefix, best of 20: 8 new tokens each: kernel 0.8 ms, SDPA 1.7;
# 15: 1.5 vs 1.5; 21: 4.2 vs 2.7 (one task then holds 63 query rows).
STREAM_MAX_EXTEND = 16

_i64, _int, _ptr = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p
# OpenMP's thread count is per calling thread; torch's is passed explicitly so that
# torch.set_num_threads governs the kernel from whichever thread runs the model.
_threads = torch.get_num_threads


def _alloc(*shape: int, dtype: torch.dtype) -> torch.Tensor:
    """Uninitialised buffers the kernel fills; tests swap in NaN-filled ones to catch gaps."""
    return torch.empty(*shape, dtype=dtype)


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "radixgen" / "cpu_kernels"


def _cpu_flags() -> str:
    """The CPU's feature flags: -march=native output is only valid on a CPU that has them all."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return ""


@functools.lru_cache(maxsize=1)
def load_library() -> ctypes.CDLL | None:
    """Builds (once per source, compiler and CPU) and loads the kernel; None if that fails."""
    cxx = os.environ.get("CXX", "g++")
    headers = [_HERE / f"{name}.h" for name in ("cpu_attention_avx512", "cpu_vec512", "cpu_scalar", "cpu_ops")]
    sources = [p.read_bytes() for p in [*_SOURCES, *headers]]
    key = hashlib.sha256(b"\0".join([*sources, cxx.encode(), " ".join(_FLAGS).encode(),
                                     _cpu_flags().encode()])).hexdigest()[:16]
    path = _cache_dir() / f"cpu_attention_{key}.so"
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")  # concurrent builders each rename atomically
            subprocess.run([cxx, *_FLAGS, *map(str, _SOURCES), "-o", str(tmp)], check=True,
                           capture_output=True, text=True, timeout=300)
            os.replace(tmp, path)
        lib = ctypes.CDLL(str(path))  # torch is imported first, so OpenMP resolves to torch's libgomp
    except (OSError, subprocess.SubprocessError) as err:
        lines = (getattr(err, "stderr", "") or str(err) or type(err).__name__).strip().splitlines()
        detail = next((line for line in lines if "error" in line), lines[-1] if lines else "")
        warnings.warn(f"radixgen: CPU attention kernel unavailable, using the torch reference ({detail})")
        return None
    lib.rg_attention.restype = ctypes.c_int
    lib.rg_attention.argtypes = [_int, _ptr, _ptr, _ptr, _ptr, _ptr, _i64, _i64, _ptr, _i64,
                                 _ptr, _ptr, _ptr, _i64, _i64, _i64, _i64, ctypes.c_float, _i64, ctypes.c_float,
                                 _i64, _int, _int]
    lib.rg_attention_splits.restype = _i64
    lib.rg_attention_splits.argtypes = [_ptr, _i64, _i64, _i64, _i64, _int]
    lib.rg_gather_kv.restype = None
    lib.rg_gather_kv.argtypes = [_ptr, _ptr, _i64, _i64, _ptr, _i64, _ptr, _ptr, _i64, _i64, _ptr, _ptr, _int]
    lib.rg_apply_bitmask.restype = None
    lib.rg_apply_bitmask.argtypes = [_ptr, _int, _i64, _ptr, _i64, _i64, _i64, _int]
    lib.rg_linear_small_max_rows.restype = ctypes.c_int
    lib.rg_pack_linear_small.restype = None
    lib.rg_pack_linear_small.argtypes = [_ptr, _ptr, _i64, _i64]
    lib.rg_linear_small.restype = None
    lib.rg_linear_small.argtypes = [_ptr, _ptr, _ptr, _ptr, _i64, _i64, _i64, _int]
    lib.rg_argmax.restype = None
    lib.rg_argmax.argtypes = [_ptr, _int, _i64, _i64, _i64, _ptr, _int]
    lib.rg_add_rmsnorm.restype = None
    lib.rg_add_rmsnorm.argtypes = [_ptr, _ptr, _ptr, _ptr, _i64, _i64, ctypes.c_float, _int]
    lib.rg_rope_write_kv.restype = None
    lib.rg_rope_write_kv.argtypes = [_ptr, _i64, _ptr, _ptr, _ptr, _ptr, _ptr, _ptr, _i64, _i64,
                                     _i64, _i64, _i64, _i64, _int]
    lib.rg_silu_mul.restype = None
    lib.rg_silu_mul.argtypes = [_ptr, _ptr, _i64, _i64, _int]
    for name in ("rg_add_rmsnorm", "rg_rope_write_kv", "rg_silu_mul"):  # the fp32 versions: same arguments
        getattr(lib, name + "_f32").restype = None
        getattr(lib, name + "_f32").argtypes = getattr(lib, name).argtypes
    lib.rg_rope_write_kv_f32_bf16kv.restype = None  # fp32 model, bf16 KV pools
    lib.rg_rope_write_kv_f32_bf16kv.argtypes = lib.rg_rope_write_kv.argtypes
    return lib


def is_available() -> bool:
    return load_library() is not None


def _can_stream(q: torch.Tensor, k_pool: torch.Tensor, v_pool: torch.Tensor) -> bool:
    """The kernel handles CPU pools of fp32/bf16, unit stride on D, K and V laid out alike."""
    h, d = q.shape[1], q.shape[2]
    kvh = k_pool.shape[1]
    return (load_library() is not None and q.device.type == "cpu" and k_pool.device.type == "cpu"
            and k_pool.dtype in _POOL_DTYPES and v_pool.dtype == k_pool.dtype
            and k_pool.stride() == v_pool.stride() and k_pool.stride(2) == 1
            and d <= _MAX_D and h % kvh == 0 and h // kvh <= _MAX_ROWS)


def _num_splits(meta: AttnMeta, num_kv_heads: int, group: int) -> int:
    """Split each request's keys when (request, kv head) tasks alone cannot keep every thread busy
    (the kernel's rg_attention_splits: the one policy, also the decode stack's)."""
    extend = meta.c_args[3]
    return int(load_library().rg_attention_splits(extend.data_ptr(), extend.numel(), num_kv_heads, group,
                                                  meta.max_seq, _threads()))


def _stream_attention(q: torch.Tensor, k_pool: torch.Tensor, v_pool: torch.Tensor,
                      meta: AttnMeta, sm_scale: float) -> torch.Tensor:
    """q: [T, H, D] flat new tokens -> [T, H, D]; attends as `reference.extend_attention` does."""
    t, h, d = q.shape
    kvh = k_pool.shape[1]
    qf = q.to(torch.float32).contiguous()                 # fp32 [T, H, D]
    out = _alloc(t, h, d, dtype=torch.float32)            # fp32 [T, H, D], every row written
    splits = _num_splits(meta, kvh, h // kvh)
    partial = _alloc(t, h, splits, d + 2, dtype=torch.float32) if splits > 1 else out  # (m, l, acc[D])
    table, rows, prefix, extend = meta.c_args
    rc = load_library().rg_attention(
        _POOL_DTYPES[k_pool.dtype], qf.data_ptr(), out.data_ptr(), partial.data_ptr(),
        k_pool.data_ptr(), v_pool.data_ptr(), k_pool.stride(0), k_pool.stride(1),
        table.data_ptr(), table.stride(0), rows.data_ptr(), prefix.data_ptr(), extend.data_ptr(),
        rows.numel(), h, kvh, d, sm_scale, meta.window, meta.softcap, splits, int(q.dtype == torch.bfloat16),
        _threads())
    assert rc == 0, "shape checks in _can_stream and the kernel disagree"
    return out.to(q.dtype)


def decode_attention(q: torch.Tensor, k_pool: torch.Tensor, v_pool: torch.Tensor,
                     meta: AttnMeta, sm_scale: float) -> torch.Tensor:
    """q: [B, H, D], one token per request, whose K/V are already in the pool -> [B, H, D]."""
    if not _can_stream(q, k_pool, v_pool):
        return reference.decode_attention(q, k_pool, v_pool, meta, sm_scale)
    return _stream_attention(q, k_pool, v_pool, meta, sm_scale)


def _gather_kv(k_pool: torch.Tensor, v_pool: torch.Tensor,
               meta: AttnMeta) -> tuple[torch.Tensor, torch.Tensor]:
    """Pools [S, KVH, D] -> K, V as [B, KVH, max_seq, D] views of padded copies, zero past seq_len."""
    b, n = meta.batch_size, meta.max_seq
    k = _alloc(b, n, *k_pool.shape[1:], dtype=k_pool.dtype)  # [B, max_seq, KVH, D]
    v = _alloc(*k.shape, dtype=k.dtype)
    table, rows = meta.c_args[:2]
    seq = meta.seq_lens.to(torch.int64).contiguous()
    row_bytes = k[0, 0].numel() * k.element_size()
    load_library().rg_gather_kv(k_pool.data_ptr(), v_pool.data_ptr(), k_pool.stride(0) * k.element_size(),
                                row_bytes, table.data_ptr(), table.stride(0), rows.data_ptr(),
                                seq.data_ptr(), b, n, k.data_ptr(), v.data_ptr(), _threads())
    return k.transpose(1, 2), v.transpose(1, 2)


def _sdpa_extend(q: torch.Tensor, k_pool: torch.Tensor, v_pool: torch.Tensor,
                 meta: AttnMeta, sm_scale: float) -> torch.Tensor:
    """Long extends: padded queries [B, H, Q, D] against the gathered K/V in one fused SDPA call."""
    b, t = meta.batch_size, q.shape[0]
    uniform = b * meta.max_extend == t  # every request has max_extend new tokens: no padding
    if uniform:
        qp = q.view(b, meta.max_extend, *q.shape[1:])  # [B, Q, H, D]
    else:
        b_idx, i_idx = meta.token_pos
        qp = q.new_zeros(b, meta.max_extend, *q.shape[1:])
        qp[b_idx, i_idx] = q
    k, v = _gather_kv(k_pool, v_pool, meta)
    if k.dtype != q.dtype:  # a bf16 KV pool under an fp32 model
        k, v = k.to(q.dtype), v.to(q.dtype)
    if int(meta.prefix_lens.max()) == 0 and meta.window == 0:
        # No prefix: query i sees keys <= i, SDPA's own (top-left) causal mask; padded keys are zero
        # and seen only by padded queries, which are dropped.
        out = F.scaled_dot_product_attention(qp.transpose(1, 2), k, v, is_causal=True,
                                             scale=sm_scale, enable_gqa=True)
    else:
        out = F.scaled_dot_product_attention(qp.transpose(1, 2), k, v, attn_mask=meta.mask,
                                             scale=sm_scale, enable_gqa=True)
    out = out.transpose(1, 2)  # [B, Q, H, D]
    return out.reshape(t, *q.shape[1:]) if uniform else out[b_idx, i_idx]  # [T, H, D]


def extend_attention(q: torch.Tensor, k_pool: torch.Tensor, v_pool: torch.Tensor,
                     meta: AttnMeta, sm_scale: float) -> torch.Tensor:
    """q: [T, H, D] new tokens (K/V already in the pool), prefix + causal -> [T, H, D]."""
    if not _can_stream(q, k_pool, v_pool):
        return reference.extend_attention(q, k_pool, v_pool, meta, sm_scale)
    if meta.max_extend <= STREAM_MAX_EXTEND or meta.softcap:  # SDPA cannot soft-cap scores
        return _stream_attention(q, k_pool, v_pool, meta, sm_scale)
    if k_pool.stride(1) != k_pool.shape[2]:  # the gather copies whole slots: [KVH, D] contiguous
        return reference.extend_attention(q, k_pool, v_pool, meta, sm_scale)
    return _sdpa_extend(q, k_pool, v_pool, meta, sm_scale)


def apply_token_bitmask(logits: torch.Tensor, bitmask: torch.Tensor) -> None:
    """logits: float [B, V]; bitmask: int32 [B, >= ceil(V / 32)]; disallowed logits -> -inf in place."""
    lib = load_library()
    if (lib is None or logits.device.type != "cpu" or logits.dim() != 2 or logits.stride(1) != 1
            or logits.dtype not in (torch.float32, torch.bfloat16)):
        return reference.apply_token_bitmask(logits, bitmask)
    words = bitmask.to(torch.int32).contiguous()
    lib.rg_apply_bitmask(logits.data_ptr(), int(logits.dtype == torch.bfloat16), logits.stride(0),
                         words.data_ptr(), words.stride(0), logits.shape[0], logits.shape[1], _threads())


def argmax(logits: torch.Tensor) -> torch.Tensor:
    """logits: float [B, V] -> int64 [B], the first index of each row's maximum (NaNs skipped)."""
    lib = load_library()
    if (lib is None or logits.device.type != "cpu" or logits.dim() != 2 or logits.stride(1) != 1
            or logits.dtype not in (torch.float32, torch.bfloat16)):
        return logits.max(dim=-1).indices
    out = torch.empty(logits.shape[0], dtype=torch.int64)
    lib.rg_argmax(logits.data_ptr(), int(logits.dtype == torch.bfloat16), logits.stride(0),
                  logits.shape[0], logits.shape[1], out.data_ptr(), _threads())
    return out
