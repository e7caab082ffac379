"""Weight-quantized linear layers for the CPU path (issue #17): batch-1 decode reads every weight once
per token, so it is bound by memory, and fewer bytes per weight is the lever (fp32 4, int8 1, int4 0.5).

Modes and their kernels, all PyTorch's own (measured on an AVX2-only AMD EPYC Zen 3, one thread,
bench/quant.py --kernels; teacher-forced top-1 agreement with fp32 on the bundled SmolLM2, 64
greedy tokens of 2 prompts, where fp32 against itself gave 0.98):
  * int8, `int8pack`: torch._weight_int8pack_mm, weight-only (per-output-channel scales, activations
    stay float): agreement 0.93 (0.95 on test_quantization's 3 prompts). Vectorized only for
    AVX-512 in this torch build: on AVX2 it ran 4-7x SLOWER than fp32 at 1 row, 25-50x at 64 rows.
  * int4, `int4pack`: torch._weight_int4pack_mm_for_cpu, group-wise (32) asymmetric 4-bit, weight-
    only, dequantizing as (q - 8) * scale + zero; holds a Q4_1 GGUF's blocks exactly. Agreement
    0.94 with the LM head at int8 (0.80 with an int4 one). Also scalar on AVX2 (8-14x slower than
    fp32 at 1 row): on such a CPU int4 saves memory, not time.
  * int8-dynamic, `fbgemm`: quantized::linear_dynamic over the same int8 weight; each call also
    quantizes the activations to 7 bits with one scale per call (reduce_range: AVX2's u8*s8 pair
    sums saturate int16 at 8 bits). Vectorized on AVX2: 1.2-6.5x faster than fp32 at 1 row, 2.7-4.5x
    at 64, but lossy: agreement 0.48 (0.83 with it on the LM head alone). Opt-in only.
  * `dequant`: the fallback where an op is missing or refuses a shape: the weight dequantized back to
    float at load, a plain F.linear (the numerics of the quantized weight, the speed of fp32).
"""
from __future__ import annotations

import logging
import warnings

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger("radixgen")

INT4_GROUP = 32  # Q4_1's block: a Q4_1 GGUF's weights fit this format exactly (see quantize_int4)


def quantize_int8(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel int8: w [N, K] float -> (q int8 [N, K], scale fp32 [N]),
    w ~= q * scale[:, None]. A zero row gets scale 1 (q all zero) rather than a division by zero."""
    w = w.detach().float()
    scale = w.abs().amax(dim=1) / 127.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.clamp(torch.round(w / scale[:, None]), -127, 127).to(torch.int8)
    return q, scale


def quantize_int4(w: torch.Tensor, group: int = INT4_GROUP) -> tuple[torch.Tensor, torch.Tensor]:
    """Asymmetric group-wise 4-bit along K: w [N, K] -> (q int32 [N, K] in 0..15, scales_and_zeros
    fp32 [K / group, N, 2]) in torch's int4pack convention, w ~= (q - 8) * scale + zero.

    Min/max quantization: scale = (max - min) / 15, q = round((w - min) / scale), zero = min + 8 scale.
    A GGUF Q4_1 block (32 weights, w = d * q + m, with q = 0 and q = 15 both used, as ggml quantizes
    them) comes back with scale = d, zero = m + 8 d, the very same q: no extra loss beyond fp32
    rounding of scale and zero (test_quantization checks this on the bundled model)."""
    n, k = w.shape
    if k % group:
        raise ValueError(f"in_features {k} is not a multiple of the int4 group size {group}")
    g = w.detach().float().reshape(n, k // group, group)
    lo, hi = g.amin(dim=2), g.amax(dim=2)                           # [N, K/G]
    scale = (hi - lo) / 15.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))   # a constant group: q = 0, w = lo
    q = torch.clamp(torch.round((g - lo[..., None]) / scale[..., None]), 0, 15).to(torch.int32)
    zero = lo + 8.0 * scale
    sz = torch.stack([scale, zero], dim=-1).transpose(0, 1).contiguous()  # [K/G, N, 2]
    return q.reshape(n, k), sz


def dequantize_int4(q: torch.Tensor, sz: torch.Tensor, group: int = INT4_GROUP) -> torch.Tensor:
    """The float weight [N, K] that (q, scales_and_zeros) stand for (the reference of the kernel)."""
    scale = sz[..., 0].t().repeat_interleave(group, dim=1)  # [N, K]
    zero = sz[..., 1].t().repeat_interleave(group, dim=1)
    return (q.float() - 8.0) * scale + zero


def fbgemm_ok() -> bool:
    return "fbgemm" in torch.backends.quantized.supported_engines and hasattr(torch.ops.quantized, "linear_dynamic")


class QuantLinear(nn.Module):
    """y = x W^T + b with W held quantized ('int8' or 'int4'); see the module doc for the kernels.
    Only what the chosen kernel reads is kept: no float copy of W (except on the `dequant` path)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, mode: str, kernel: str | None = None):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.mode = mode
        self.bias = None if bias is None else bias.detach().float()
        self.kernel = kernel or self._default_kernel()
        try:
            self._build(weight)
        except (RuntimeError, ValueError, AttributeError) as exc:  # op missing or refusing this shape
            log.warning("%s kernel %s unavailable for a %dx%d linear (%s): dequantized float fallback",
                        mode, self.kernel, self.out_features, self.in_features, exc)
            self.kernel = "dequant"
            self._build(weight)

    def _default_kernel(self) -> str:
        if self.mode == "int8":
            return "int8pack"
        if self.mode == "int8-dynamic":
            return "fbgemm" if fbgemm_ok() else "int8pack"
        if self.mode == "int4":
            return "int4pack"
        raise ValueError(f"quantization mode must be int8, int4 or int8-dynamic, got {self.mode!r}")

    def _build(self, weight: torch.Tensor) -> None:
        self.packed: object | None = None
        self.q: torch.Tensor | None = None
        self.scales: torch.Tensor | None = None
        self.dense: torch.Tensor | None = None
        if self.mode == "int4":
            q, scale = quantize_int4(weight)
        else:
            q, scale = quantize_int8(weight)
        if self.kernel == "fbgemm":
            with warnings.catch_warnings():  # quantized tensors are deprecated in torch 2.13, still work
                warnings.simplefilter("ignore")
                qw = torch.quantize_per_channel(q.float() * scale[:, None], scale.double(),
                                                torch.zeros_like(scale, dtype=torch.int64), 0, torch.qint8)
                self.packed = torch.ops.quantized.linear_prepack(qw, self.bias)
        elif self.kernel == "int8pack":
            self.q, self.scales = q, scale
            torch._weight_int8pack_mm(torch.zeros(1, self.in_features), q, scale)  # raises if missing
        elif self.kernel == "int4pack":
            self.q = torch._convert_weight_to_int4pack_for_cpu(q, 1)  # [N, K / 2] uint8
            self.scales = scale
            torch._weight_int4pack_mm_for_cpu(torch.zeros(1, self.in_features), self.q, INT4_GROUP, scale)
        elif self.kernel == "dequant":
            self.dense = (dequantize_int4(q, scale) if self.mode == "int4" else q.float() * scale[:, None])
        else:
            raise ValueError(f"unknown quantized kernel {self.kernel!r}")

    def dequantized(self) -> torch.Tensor:
        """The float weight [N, K] this layer multiplies by (for tests and the reference path)."""
        if self.kernel == "fbgemm":
            qw, _ = torch.ops.quantized.linear_unpack(self.packed)
            return qw.dequantize()
        if self.kernel == "int8pack":
            return self.q.float() * self.scales[:, None]
        if self.kernel == "int4pack":
            eye = torch.eye(self.in_features)  # the kernel applied to I gives W^T
            return torch._weight_int4pack_mm_for_cpu(eye, self.q, INT4_GROUP, self.scales).t().contiguous()
        return self.dense

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [M, K] (any float dtype) -> [M, N] in x's dtype; the kernels run in fp32."""
        dtype = x.dtype
        x = x.float().contiguous()
        if x.shape[0] == 0:
            return x.new_empty(0, self.out_features, dtype=dtype)
        if self.kernel == "fbgemm":
            y = torch.ops.quantized.linear_dynamic(x, self.packed, True)  # bias fused
            return y.to(dtype)
        if self.kernel == "int8pack":
            y = torch._weight_int8pack_mm(x, self.q, self.scales)
        elif self.kernel == "int4pack":
            y = torch._weight_int4pack_mm_for_cpu(x, self.q, INT4_GROUP, self.scales)
        else:
            y = F.linear(x, self.dense)
        if self.bias is not None:
            y = y + self.bias
        return y.to(dtype)

    def warm_up(self, max_rows: int) -> None:
        """Nothing to build ahead (the kernels are not JIT-compiled per shape)."""

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, {self.mode}, kernel={self.kernel}"

