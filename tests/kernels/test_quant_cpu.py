"""The block-quantized linear kernels against a torch reference: cpu_quant.cpp's portable one (1..17
rows) and cpu_quant_panel.cpp's (1..67 rows: its 4-row micro-kernel's remainders and 64-row blocks), for Q4_0, Q4_1 and Q8_0, odd shapes (K a multiple of
32 but not of 256, N not a multiple of 4-row tiles or 8-column panels, more than 16 panels)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from radixgen.kernels import cpu_quant
from radixgen.kernels.cpu_quant import QK, BlockWeight, dequantize, quantize

pytestmark = pytest.mark.skipif(not cpu_quant.is_available(), reason="the CPU kernel library could not be built")

FORMATS = ["Q4_0", "Q4_1", "Q8_0"]
SHAPES = [(5, 32), (96, 608), (131, 576), (64, 1536)]  # (N, K)


def _q8_activations(x: torch.Tensor) -> torch.Tensor:
    """x [M, K] -> what the kernel multiplies by: per 32-block, round(x / d) * d with d = amax / 127."""
    g = x.reshape(x.shape[0], -1, QK)
    amax = g.abs().amax(dim=2, keepdim=True)
    inv = torch.where(amax > 0, 127.0 / amax, 0.0)
    return (torch.round(g * inv) * (amax / 127.0)).reshape(x.shape)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("n,k", SHAPES)
def test_gemm_matches_dequantized_matmul(fmt: str, n: int, k: int) -> None:
    torch.manual_seed(n + k)
    w = quantize(torch.randn(n, k) * 0.05, fmt)
    wd, bias = dequantize(w), torch.randn(n)
    for m in (1, 2, 3, 4, 5, 8, 16, 17):
        x = torch.randn(m, k)
        y = cpu_quant.gemm(x, w, bias)
        # Against the same int8 activations: only float summation order differs.
        exact = _q8_activations(x) @ wd.T + bias
        torch.testing.assert_close(y, exact, rtol=1e-4, atol=1e-4 * exact.abs().max().item())
        # Against float activations: the q8 rounding costs about 0.5% of the output's norm.
        ref = x @ wd.T + bias
        assert ((y - ref).norm() / ref.norm()).item() < 0.02


@pytest.mark.skipif(not cpu_quant.panels_available(), reason="the panel kernel needs AVX2 + FMA + F16C")
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("n,k", SHAPES)
def test_panels_match_the_dequantized_matmul(fmt: str, n: int, k: int) -> None:
    torch.manual_seed(n + k)
    w = quantize(torch.randn(n, k) * 0.05, fmt)
    panels = cpu_quant.pack_panels(w)
    back = cpu_quant.unpack_panels(panels)  # the layout change moves bytes only
    assert torch.equal(back.qs, w.qs) and torch.equal(back.d, w.d)
    assert (back.m is None) == (w.m is None) and (w.m is None or torch.equal(back.m, w.m))
    wd, bias = dequantize(w), torch.randn(n)
    for m in (1, 3, 4, 5, 17, 64, 67):
        x = torch.randn(m, k)
        y = cpu_quant.gemm_panels(x, panels, bias if m % 2 else None)
        exact = _q8_activations(x) @ wd.T + (bias if m % 2 else 0)
        torch.testing.assert_close(y, exact, rtol=1e-4, atol=1e-4 * exact.abs().max().item())


@pytest.mark.parametrize("fmt", FORMATS)
def test_dequantize_rows_is_the_reference(fmt: str) -> None:
    w = quantize(torch.randn(37, 608), fmt)
    ref = dequantize(w)
    assert torch.equal(cpu_quant.dequantize_rows(w, 0, 37), ref)
    assert torch.equal(cpu_quant.dequantize_rows(w, 5, 9), ref[5:9])


def _gguf_bytes(fmt: str, d: np.ndarray, m: np.ndarray, q: np.ndarray) -> np.ndarray:
    """GGUF's block layout written by hand: fp16 d (, fp16 m), then the quants (nibbles: j | j+16 << 4)."""
    n, kb = d.shape
    parts = [d.astype(np.float16).view(np.uint8).reshape(n, kb, 2)]
    if fmt == "Q4_1":
        parts.append(m.astype(np.float16).view(np.uint8).reshape(n, kb, 2))
    if fmt == "Q8_0":
        parts.append(q.astype(np.int8).view(np.uint8))
    else:
        parts.append((q[..., :16] | (q[..., 16:] << 4)).astype(np.uint8))
    return np.concatenate(parts, axis=2).reshape(n, -1)


@pytest.mark.parametrize("fmt", FORMATS)
def test_from_gguf_reads_blocks_bit_for_bit(fmt: str) -> None:
    rng = np.random.default_rng(0)
    n, kb = 7, 3
    d = rng.uniform(1e-3, 2e-2, (n, kb)).astype(np.float16)
    m = -rng.uniform(0, 0.1, (n, kb)).astype(np.float16)
    q = rng.integers(-127, 128, (n, kb, QK)) if fmt == "Q8_0" else rng.integers(0, 16, (n, kb, QK))
    w = cpu_quant.from_gguf(_gguf_bytes(fmt, d, m, q), fmt, n, kb * QK)
    df, mf = d.astype(np.float32)[..., None], m.astype(np.float32)[..., None]
    expect = {"Q4_0": df * (q - 8), "Q4_1": df * q + mf, "Q8_0": df * q}[fmt].reshape(n, -1)
    assert torch.equal(dequantize(w), torch.from_numpy(expect.astype(np.float32)))


def test_q4_1_requantizes_its_own_blocks_exactly() -> None:
    """int4 on a Q4_1 model's (dequantized) weights gives back the same blocks (min/max quantizer)."""
    torch.manual_seed(0)
    d = (torch.rand(16, 6) * 0.02 + 1e-3).half().float()
    m = (-torch.rand(16, 6) * 0.1).half().float()
    q = torch.randint(0, 16, (16, 6, QK))
    q[..., 0], q[..., 1] = 0, 15
    w = (d[..., None] * q + m[..., None]).reshape(16, -1)
    back = dequantize(quantize(w, "Q4_1"))
    assert (back - w).abs().max().item() <= 1e-6 * w.abs().max().item()


def test_cat_and_rows_are_exact() -> None:
    a, b = quantize(torch.randn(4, 64), "Q4_1"), quantize(torch.randn(6, 64), "Q4_1")
    both = cpu_quant.cat_rows([a, b])
    assert torch.equal(dequantize(both), torch.cat([dequantize(a), dequantize(b)]))
    order = torch.tensor([9, 0, 3])
    assert torch.equal(dequantize(both.rows(order)), dequantize(both)[order])
    with pytest.raises(ValueError, match="formats"):
        cpu_quant.cat_rows([a, quantize(torch.randn(2, 64), "Q8_0")])


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="multiple of the block size"):
        quantize(torch.randn(4, 48), "Q8_0")
    with pytest.raises(ValueError, match="cannot be made at load"):
        quantize(torch.randn(4, 64), "Q5_K")
    with pytest.raises(ValueError, match="not supported"):
        cpu_quant.from_gguf(np.zeros((4, 22), np.uint8), "Q5_K", 4, 32)
    assert isinstance(quantize(torch.zeros(2, 32), "Q4_0"), BlockWeight)  # an all-zero block: d = 0
    assert torch.equal(dequantize(quantize(torch.zeros(2, 32), "Q8_0")), torch.zeros(2, 32))


def test_forced_scalar_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADIXGEN_QUANT_SCALAR", "1")
    assert cpu_quant.force_scalar() and cpu_quant.kernel_path() == "scalar (forced)"
    from radixgen.runtime.models.block_quant import BlockQuantLinear
    layer = BlockQuantLinear(quantize(torch.randn(8, 64), "Q4_1"), None)
    assert layer.panels is None and not cpu_quant.panels_available()
    monkeypatch.delenv("RADIXGEN_QUANT_SCALAR")
    assert not cpu_quant.force_scalar() and cpu_quant.kernel_path() != "scalar (forced)"


def _q4_k_bytes(n: int, k: int, seed: int) -> np.ndarray:
    """Random Q4_K super-blocks uint8 [N, K / 256 * 144] with sane fp16 d and dmin."""
    rng = np.random.default_rng(seed)
    sb = rng.integers(0, 256, (n, k // 256, 144), dtype=np.uint8)
    sb[..., 0:2] = rng.uniform(1e-4, 2e-3, (n, k // 256, 1)).astype(np.float16).view(np.uint8)
    sb[..., 2:4] = rng.uniform(1e-4, 2e-3, (n, k // 256, 1)).astype(np.float16).view(np.uint8)
    return sb.reshape(n, -1)


def test_q4_k_reads_as_gguf_dequantizes_it_bit_for_bit() -> None:
    """Q4_K super-blocks become 32-blocks with fp32 scale and min: dequantized, exactly the weight
    gguf's own dequantization (what transformers loads) gives."""
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize as gguf_dequantize
    raw = _q4_k_bytes(6, 512, 0)
    w = cpu_quant.from_gguf(raw, "Q4_K", 6, 512)
    assert w.d.dtype == torch.float32 and w.m is not None and w.qs.shape == (6, 512 // 2)
    ref = gguf_dequantize(raw, GGMLQuantizationType.Q4_K).reshape(6, 512)
    assert torch.equal(dequantize(w), torch.from_numpy(ref.astype(np.float32)))


@pytest.mark.parametrize("n,k", [(5, 256), (131, 512), (64, 1536)])
def test_q4_k_kernels_match_the_dequantized_matmul(n: int, k: int) -> None:
    w = cpu_quant.from_gguf(_q4_k_bytes(n, k, n), "Q4_K", n, k)
    wd, bias = dequantize(w), torch.randn(n)
    assert torch.equal(cpu_quant.dequantize_rows(w, 0, n), wd)
    paths = [lambda x: cpu_quant.gemm(x, w, bias)]
    if cpu_quant.panels_available():
        panels = cpu_quant.pack_panels(w)
        back = cpu_quant.unpack_panels(panels)
        assert torch.equal(back.qs, w.qs) and torch.equal(back.d, w.d) and torch.equal(back.m, w.m)
        paths.append(lambda x: cpu_quant.gemm_panels(x, panels, bias))
    for m in (1, 5, 17, 67):
        x = torch.randn(m, k)
        exact = _q8_activations(x) @ wd.T + bias
        for path in paths:
            torch.testing.assert_close(path(x), exact, rtol=1e-4, atol=1e-4 * exact.abs().max().item())


def test_blocks_cache_from_before_a_new_format_is_not_current(tmp_path) -> None:
    """A gguf_blocks cache written before Q4_K (no formats key) is rewritten at the next load."""
    from safetensors.torch import save_file

    from radixgen.runtime import gguf_blocks
    w = quantize(torch.randn(4, 64), "Q4_1")
    tensors = {"a.weight.qs": w.qs, "a.weight.d": w.d, "a.weight.m": w.m}
    save_file(tensors, str(tmp_path / gguf_blocks.BLOCKS_FILE), metadata={"a.weight": "Q4_1"})
    assert gguf_blocks.has_blocks(tmp_path) and not gguf_blocks.blocks_current(tmp_path)
    assert set(gguf_blocks.load_blocks(tmp_path)) == {"a.weight"}
    save_file(tensors, str(tmp_path / gguf_blocks.BLOCKS_FILE),
              metadata={"a.weight": "Q4_1", "__formats__": ",".join(cpu_quant.FORMATS)})
    assert gguf_blocks.blocks_current(tmp_path)
    assert torch.equal(gguf_blocks.load_blocks(tmp_path)["a.weight"].qs, w.qs)  # the key is not a tensor
