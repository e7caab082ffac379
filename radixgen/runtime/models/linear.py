"""The packed `Linear` every family's projections use: oneDNN-prepacked bf16 weights on a CPU, and
small batches on our own AMX kernel (kernels/cpu_linear.cpp through cpu_layer_ops)."""
from __future__ import annotations

import torch
from torch import nn

from radixgen.kernels import cpu_layer_ops


def padded_rows(m: int) -> int:
    """Rows a prepacked matmul runs with. oneDNN JIT-builds a kernel per distinct shape (1-3 ms each,
    more for long prefills), so M is rounded up to 8 sizes per power of two (72 up to 2048), all
    built by `warm_up`: at most 1/8 more rows, and free for small M (decode reads the weights)."""
    if m <= 8:
        return m
    step = 1 << (m.bit_length() - 4)  # m in (2^k, 2^(k+1)] -> multiples of 2^(k-3)
    return -(-m // step) * step


class Linear(nn.Linear):
    """nn.Linear that can prepack its weight for oneDNN: bf16 matmuls on a CPU otherwise reorder the
    weight on every call, and prepacked ones ran 1.5-2x faster here. Batches of up to `small_rows`
    rows (every decode step, short prefills) go to our own AMX kernel instead, on a second packed copy
    of the weight (the price: one more bf16 copy of the model in memory, 270 MB for SmolLM2-135M)."""

    packed: torch.Tensor | None = None   # oneDNN's layout
    small: torch.Tensor | None = None    # cpu_layer_ops.linear_small's layout
    small_rows: int = 0

    def pack(self, batch_hint: int = 64) -> None:
        self.packed = torch.ops.mkldnn._reorder_linear_weight(self.weight.detach(), batch_hint)
        self.small = cpu_layer_ops.pack_linear_small(self.weight)
        self.small_rows = cpu_layer_ops.small_rows() if self.small is not None else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is None:
            return super().forward(x)
        m = x.shape[0]
        # `small` is None where our kernel cannot run (no AMX / AVX512-BF16): then small_rows is 0,
        # and a forward of 0 rows (no request wants logits) must not take that path either.
        if self.small is not None and m <= self.small_rows:
            return cpu_layer_ops.linear_small(x, self.small, self.bias)
        rows = padded_rows(m)
        if rows != m:
            x = torch.cat([x, x.new_zeros(rows - m, x.shape[1])])
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")[:m]

    def warm_up(self, max_rows: int) -> None:
        """Build the oneDNN kernels of every padded row count up to max_rows that oneDNN will run
        (prepacked only; row counts up to small_rows go to our kernel, which needs no build)."""
        if self.packed is not None:
            for m in sorted({padded_rows(m) for m in range(self.small_rows + 1, max_rows + 1)}):
                self(self.weight.new_zeros(m, self.in_features))


def can_prepack(device: torch.device, dtype: torch.dtype) -> bool:
    """oneDNN prepacks bf16 weights only with AVX512-BW/VL/DQ or AVX-NE-CONVERT; on an AVX2-only CPU
    (many AMD and older Intel parts) its reorder raises, and plain nn.Linear is the path."""
    return device.type == "cpu" and dtype == torch.bfloat16 and torch.backends.mkldnn.is_available() \
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight") and torch.ops.mkldnn._is_mkldnn_bf16_supported()
