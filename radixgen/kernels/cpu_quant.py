"""Block-quantized weights (GGUF's Q4_0, Q4_1, Q8_0, Q4_K) and the CPU kernels that multiply by them
(cpu_quant_panel.cpp, cpu_quant.cpp; built into the same library as the attention kernel, see cpu.py).

A weight W [N, K] is loaded as `BlockWeight`: qs uint8 [N, K / 32 * QB] (QB = 16 bytes of nibbles
per block for 4-bit, 32 int8 for Q8_0, in GGUF's order), d and m fp16 [N, K / 32] (scales; mins for
Q4_1 only). `from_gguf` repacks a GGUF tensor's raw blocks into it without rounding anything;
`quantize` makes one from a float weight as ggml does; `dequantize` is the torch reference.
Where the CPU has AVX2 + FMA + F16C, `pack_panels` moves its bytes into the panel kernel's layout
(`PanelWeight`, 8 output columns per panel) and `gemm_panels` multiplies, for any row count
(activations quantized per row and block to int8 on the fly). Elsewhere the portable kernels
remain: `gemm` (plain C++, the same arithmetic) for a few rows, `dequantize_rows` for fp32 tiles.

RADIXGEN_QUANT_SCALAR=1 forces the portable kernels (read when a layer is built), so the fallback
for CPUs without AVX2 + FMA + F16C can be tested anywhere.
"""
from __future__ import annotations

import ctypes
import functools
import os
from dataclasses import dataclass

import numpy as np
import torch

from .cpu import load_library

QK = 32  # weights per block
FORMATS = {"Q4_0": 2, "Q4_1": 3, "Q8_0": 8, "Q4_K": 12}  # ggml's type ids
_QB = {"Q4_0": 16, "Q4_1": 16, "Q8_0": 32, "Q4_K": 16}  # quant bytes per block
_GGUF_BLOCK = {"Q4_0": 18, "Q4_1": 20, "Q8_0": 34}  # bytes per block in a GGUF file
_i64, _int, _ptr = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p


@dataclass(frozen=True)
class BlockWeight:
    fmt: str              # Q4_0 | Q4_1 | Q8_0
    qs: torch.Tensor      # uint8 [N, K / 32 * QB]
    d: torch.Tensor       # fp16 [N, K / 32] (fp32 for Q4_K)
    m: torch.Tensor | None  # fp16 [N, K / 32] (fp32 for Q4_K), Q4_1 and Q4_K only

    @property
    def shape(self) -> tuple[int, int]:
        return self.d.shape[0], self.d.shape[1] * QK

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.qs, self.d, self.m) if t is not None)

    def rows(self, index: torch.Tensor) -> "BlockWeight":
        """The rows `index` (int64 [R]) of W, still quantized: a row permutation or slice is exact."""
        return BlockWeight(self.fmt, self.qs[index], self.d[index], None if self.m is None else self.m[index])


def cat_rows(weights: list[BlockWeight]) -> BlockWeight:
    """Stack weights of one format along N (fused q/k/v, gate/up): exact, blocks run along K."""
    fmt = weights[0].fmt
    if any(w.fmt != fmt for w in weights):
        raise ValueError(f"cannot fuse weights of formats {[w.fmt for w in weights]}")
    m = None if weights[0].m is None else torch.cat([w.m for w in weights])
    return BlockWeight(fmt, torch.cat([w.qs for w in weights]), torch.cat([w.d for w in weights]), m)


def from_gguf(raw: np.ndarray, fmt: str, n: int, k: int) -> BlockWeight:
    """A GGUF tensor's bytes (uint8, N rows of K / 32 blocks; K / 256 for Q4_K) -> BlockWeight, bit for bit."""
    if fmt not in FORMATS:
        raise ValueError(f"block format {fmt!r} is not supported (supported: {', '.join(FORMATS)})")
    if fmt == "Q4_K":
        return _from_q4_k(np.asarray(raw, dtype=np.uint8).reshape(n, k // 256, 144))
    blocks = torch.from_numpy(np.array(raw, dtype=np.uint8).reshape(n, k // QK, _GGUF_BLOCK[fmt]))
    d = blocks[..., 0:2].contiguous().view(torch.float16).reshape(n, k // QK)
    m = blocks[..., 2:4].contiguous().view(torch.float16).reshape(n, k // QK) if fmt == "Q4_1" else None
    qs = blocks[..., _GGUF_BLOCK[fmt] - _QB[fmt]:].reshape(n, -1).contiguous()
    return BlockWeight(fmt, qs, d.contiguous(), m)


def _scale_min_k4(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q4_K's 12 scale bytes [..., 12] -> 6-bit sub-scales and sub-mins [..., 8]: bytes 0-3 hold
    scales 0-3 (low 6 bits) and the top 2 bits of scales 4-7; 4-7 the same for the mins; 8-11 the
    low 4 bits of scales 4-7 (low nibble) and of mins 4-7 (high nibble)."""
    lo_d, lo_m, hi = s[..., 0:4], s[..., 4:8], s[..., 8:12]
    sc = np.concatenate([lo_d & 63, (hi & 0x0F) | ((lo_d >> 2) & 0x30)], axis=-1)
    mn = np.concatenate([lo_m & 63, (hi >> 4) | ((lo_m >> 2) & 0x30)], axis=-1)
    return sc, mn


def _from_q4_k(sb: np.ndarray) -> BlockWeight:
    """Q4_K super-blocks uint8 [N, S, 144] (fp16 d, fp16 dmin, 12 scale bytes, 128 quant bytes for
    256 weights) -> 32-blocks in Q4_1's form: weight = (d * sc) * q - dmin * m per sub-block, so the
    block's scale d * sc and min -(dmin * m) are kept in fp32, where both products are exact (11-bit
    times 6-bit mantissas), as gguf's own dequantization computes them."""
    n, s = sb.shape[:2]
    d = sb[..., 0:2].copy().view(np.float16).astype(np.float32)      # [N, S, 1]
    dmin = sb[..., 2:4].copy().view(np.float16).astype(np.float32)   # [N, S, 1]
    sc, mn = _scale_min_k4(sb[..., 4:16])                             # [N, S, 8]
    qs = sb[..., 16:].reshape(n, s, 4, 32)  # 64 weights a chunk: low nibbles the first 32, high the next
    q = np.stack([qs & 0x0F, qs >> 4], axis=3).reshape(n, s * 8, QK)  # [N, KB, 32] in order
    scale = (d * sc.astype(np.float32)).reshape(n, s * 8)
    mins = -(dmin * mn.astype(np.float32)).reshape(n, s * 8)
    return BlockWeight("Q4_K", _pack_nibbles(torch.from_numpy(q)), torch.from_numpy(scale), torch.from_numpy(mins))


def _pack_nibbles(q: torch.Tensor) -> torch.Tensor:
    """q int [N, KB, 32] in 0..15 -> uint8 [N, KB * 16]: byte j = q[j] | q[j + 16] << 4 (GGUF's order)."""
    q = q.to(torch.uint8)
    return (q[..., :16] | (q[..., 16:] << 4)).reshape(q.shape[0], -1).contiguous()


def quantize(w: torch.Tensor, fmt: str) -> BlockWeight:
    """Float W [N, K] (K % 32 == 0) -> blocks as ggml's reference quantizers make them. Q4_1 uses
    min/max (d = (max - min) / 15, m = min): a Q4_1 GGUF's own weights come back as they were."""
    n, k = w.shape
    if k % QK:
        raise ValueError(f"in_features {k} is not a multiple of the block size {QK}")
    g = w.detach().float().reshape(n, k // QK, QK)
    if fmt == "Q8_0":
        d = g.abs().amax(dim=2) / 127.0
        q = torch.round(g * torch.where(d > 0, 1.0 / d, 0.0)[..., None]).clamp(-127, 127)
        return BlockWeight(fmt, q.to(torch.int8).view(torch.uint8).reshape(n, -1).contiguous(), d.half(), None)
    if fmt == "Q4_1":
        lo, hi = g.amin(dim=2), g.amax(dim=2)
        d = (hi - lo) / 15.0
        q = torch.round((g - lo[..., None]) * torch.where(d > 0, 1.0 / d, 0.0)[..., None]).clamp(0, 15)
        return BlockWeight(fmt, _pack_nibbles(q), d.half(), lo.half())
    if fmt == "Q4_0":  # the value of largest magnitude maps to -8 (ggml's quantize_row_q4_0_ref)
        idx = g.abs().argmax(dim=2, keepdim=True)
        d = g.gather(2, idx).squeeze(2) / -8.0
        q = torch.floor(g * torch.where(d != 0, 1.0 / d, 0.0)[..., None] + 8.5).clamp(0, 15)
        return BlockWeight(fmt, _pack_nibbles(q), d.half(), None)
    raise ValueError(f"block format {fmt!r} cannot be made at load (supported: Q4_0, Q4_1, Q8_0)")


def dequantize(w: BlockWeight) -> torch.Tensor:
    """The float W [N, K] the blocks stand for, in torch (the kernels' reference)."""
    n, k = w.shape
    d = w.d.float()[..., None]                                    # [N, KB, 1]
    if w.fmt == "Q8_0":
        return (d * w.qs.view(torch.int8).reshape(n, -1, QK).float()).reshape(n, k)
    b = w.qs.reshape(n, -1, 16)
    q = torch.cat([b & 0x0F, b >> 4], dim=2).float()              # [N, KB, 32], in order
    mn = w.m.float()[..., None] if w.m is not None else -8.0 * d
    return (d * q + mn).reshape(n, k)


@functools.lru_cache(maxsize=1)
def _lib() -> ctypes.CDLL | None:
    lib = load_library()
    if lib is None:
        return None
    lib.rg_quant_gemm.restype = None
    lib.rg_quant_gemm.argtypes = [_int, _ptr, _ptr, _ptr, _ptr, _ptr, _ptr, _i64, _i64, _i64, _int]
    lib.rg_quant_panels_available.restype = _int
    lib.rg_quant_pack_panels.restype = None
    lib.rg_quant_pack_panels.argtypes = [_int, _ptr, _ptr, _ptr, _i64, _i64, _ptr, _ptr, _ptr]
    lib.rg_quant_gemm_panels.restype = None
    lib.rg_quant_gemm_panels.argtypes = [_int, _ptr, _ptr, _ptr, _ptr, _ptr, _ptr, _i64, _i64, _i64, _int]
    lib.rg_quant_dequant.restype = None
    lib.rg_quant_dequant.argtypes = [_int, _ptr, _ptr, _ptr, _i64, _i64, _i64, _ptr, _int]
    return lib


def is_available() -> bool:
    return _lib() is not None


def force_scalar() -> bool:
    return os.environ.get("RADIXGEN_QUANT_SCALAR", "") not in ("", "0")


def kernel_path() -> str:
    """The path the block-quantized linears take on this machine, for the start-up line."""
    lib = _lib()
    if lib is None:
        return "unavailable"
    if force_scalar():
        return "scalar (forced)"
    return "panels, avx2 (maddubs)" if lib.rg_quant_panels_available() else "scalar"


def cpu_kind() -> str:
    """The CPU's model name and the vector features the kernels care about, for the start-up line."""
    try:
        info = open("/proc/cpuinfo").read()
    except OSError:
        return "unknown CPU"
    lines = info.splitlines()
    name = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "unknown CPU")
    flags = set(next((ln for ln in lines if ln.startswith("flags")), "").split())
    feats = [f for f in ("avx2", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16")
             if f in flags]
    return f"{name} ({'+'.join(feats) or 'no avx2'})"


def _ptrs(w: BlockWeight) -> tuple[int, int, int]:
    return w.qs.data_ptr(), w.d.data_ptr(), 0 if w.m is None else w.m.data_ptr()


def gemm(x: torch.Tensor, w: BlockWeight, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x fp32 [M, K] -> fp32 [M, N] = x W^T (+ bias fp32 [N]), x quantized to int8 per 32-block:
    the portable kernel (plain C++), the fallback for few rows where the panels cannot run."""
    n, k = w.shape
    x = x.float().contiguous()
    out = torch.empty(x.shape[0], n, dtype=torch.float32)
    b = 0 if bias is None else bias.data_ptr()
    _lib().rg_quant_gemm(FORMATS[w.fmt], *_ptrs(w), b, x.data_ptr(), out.data_ptr(), x.shape[0], n, k,
                         torch.get_num_threads())
    return out


def dequantize_rows(w: BlockWeight, n0: int, n1: int) -> torch.Tensor:
    """Rows n0 .. n1 - 1 of W as fp32 [n1 - n0, K], by the kernel library (the fallback's tiles)."""
    k = w.shape[1]
    out = torch.empty(n1 - n0, k, dtype=torch.float32)
    _lib().rg_quant_dequant(FORMATS[w.fmt], *_ptrs(w), n0, n1, k, out.data_ptr(), torch.get_num_threads())
    return out


@dataclass(frozen=True)
class PanelWeight:
    """W in cpu_quant_panel.cpp's layout (8 output columns per panel), for any row count."""
    fmt: str
    n: int                  # out_features (the last panel padded with zeros)
    k: int
    q: torch.Tensor         # uint8 [P, K / 32, 128 or 256]
    d: torch.Tensor         # fp16 [P, K / 32, 8] (fp32 for Q4_K)
    m: torch.Tensor | None  # the same, Q4_1 and Q4_K only

    @property
    def shape(self) -> tuple[int, int]:
        return self.n, self.k

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.q, self.d, self.m) if t is not None)


def panels_available() -> bool:
    """The panel kernel needs AVX2 + FMA + F16C; without it many rows take fp32 tiles."""
    lib = _lib()
    return lib is not None and bool(lib.rg_quant_panels_available()) and not force_scalar()


def pack_panels(w: BlockWeight) -> PanelWeight:
    """W -> the panel kernel's layout (bytes and scales move, nothing is rounded)."""
    n, k = w.shape
    p, kb = (n + 7) // 8, k // QK
    q = torch.empty(p, kb, 256 if w.fmt == "Q8_0" else 128, dtype=torch.uint8)
    d = torch.empty(p, kb, 8, dtype=w.d.dtype)
    m = None if w.m is None else torch.empty(p, kb, 8, dtype=w.m.dtype)
    _lib().rg_quant_pack_panels(FORMATS[w.fmt], *_ptrs(w), n, k, q.data_ptr(), d.data_ptr(),
                                0 if m is None else m.data_ptr())
    return PanelWeight(w.fmt, n, k, q, d, m)


def unpack_panels(w: PanelWeight) -> BlockWeight:
    """The inverse of `pack_panels`: chunk c, column j, byte t of a panel's block is byte 4 c + t
    of column j's block (see cpu_quant_panel.cpp)."""
    p, kb, _ = w.q.shape
    qb = _QB[w.fmt]
    qs = w.q.view(p, kb, qb // 4, 8, 4).permute(0, 3, 1, 2, 4).reshape(p * 8, kb * qb)[: w.n]
    rows = lambda t: t.permute(0, 2, 1).reshape(p * 8, kb)[: w.n].contiguous()  # noqa: E731
    return BlockWeight(w.fmt, qs.contiguous(), rows(w.d), None if w.m is None else rows(w.m))


def gemm_panels(x: torch.Tensor, w: PanelWeight, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x fp32 [M, K] -> fp32 [M, N] = x W^T (+ bias fp32 [N]); the arithmetic of `gemm`."""
    x = x.float().contiguous()
    out = torch.empty(x.shape[0], w.n, dtype=torch.float32)
    _lib().rg_quant_gemm_panels(FORMATS[w.fmt], w.q.data_ptr(), w.d.data_ptr(), 0 if w.m is None else w.m.data_ptr(),
                                0 if bias is None else bias.data_ptr(), x.data_ptr(), out.data_ptr(), x.shape[0],
                                w.n, w.k, torch.get_num_threads())
    return out
