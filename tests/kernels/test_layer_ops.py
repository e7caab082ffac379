"""The fused CPU layer ops against their torch reference (kernels/layer_ops.py) on random bf16 input.

Element-wise results must match the reference bit for bit, except where the reference's own float
reduction order differs from the kernel's (RMSNorm's mean of squares, SiLU's exp): there at most a
few elements may move by one bf16 ulp. The fp32 versions agree with the reference to a few fp32
ulps (the sum's order, fused multiply-adds, exp).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from radixgen.kernels import cpu, cpu_layer_ops, layer_ops, reference
from radixgen.kernels.cpu import is_available

pytestmark = pytest.mark.skipif(not is_available(), reason="the C++ CPU kernels could not be built")
BF16 = torch.bfloat16


def assert_close_ulp(got: torch.Tensor, want: torch.Tensor, max_frac: float = 0.002) -> None:
    """Equal, or one bf16 ulp apart on at most max_frac of the elements."""
    assert got.shape == want.shape and got.dtype == want.dtype
    diff = (got.float() - want.float()).abs()
    ulp = want.float().abs().clamp_min(1e-30) * 2.0 ** -7
    assert bool((diff <= ulp * 1.01).all()), f"max diff {diff.max()}"
    assert (diff > 0).float().mean() <= max_frac


@pytest.mark.parametrize("t", [1, 7, 300])
@pytest.mark.parametrize("with_residual", [False, True])
def test_add_rmsnorm(t: int, with_residual: bool) -> None:
    g = torch.Generator().manual_seed(t)
    x = (torch.randn(t, 576, generator=g) * 3).to(BF16)
    res = torch.randn(t, 576, generator=g).to(BF16) if with_residual else None
    w = (torch.rand(576, generator=g) + 0.5).to(BF16)
    want_out, want_res = layer_ops.add_rmsnorm(x, None if res is None else res.clone(), w, 1e-5)
    got_out, got_res = cpu_layer_ops.add_rmsnorm(x, None if res is None else res.clone(), w, 1e-5)
    assert torch.equal(got_res, want_res)  # the residual add is exact: one rounding either way
    assert_close_ulp(got_out, want_out)


@pytest.mark.parametrize("t,h,kvh,d", [(1, 9, 3, 64), (5, 4, 4, 32), (130, 8, 2, 128)])
def test_rope_write_kv(t: int, h: int, kvh: int, d: int) -> None:
    g = torch.Generator().manual_seed(h * d)
    qkv = torch.randn(t, (h + 2 * kvh) * d, generator=g).to(BF16)
    ang = torch.rand(t, d // 2, generator=g) * 100
    cos = torch.cat([ang.cos(), ang.cos()], -1).to(BF16)
    sin = torch.cat([ang.sin(), ang.sin()], -1).to(BF16)
    slots = torch.randperm(4 * t, generator=g)[:t]
    pools = [torch.full((4 * t, kvh, d), float("nan"), dtype=BF16) for _ in range(4)]
    want_q = layer_ops.rope_write_kv(qkv, cos, sin, pools[0], pools[1], slots, h, reference.write_kv)
    got_q = cpu_layer_ops.rope_write_kv(qkv, cos, sin, pools[2], pools[3], slots, h, reference.write_kv)
    assert torch.equal(got_q, want_q)
    assert torch.equal(pools[2][slots], pools[0][slots]) and torch.equal(pools[3][slots], pools[1][slots])
    untouched = torch.ones(4 * t, dtype=torch.bool)
    untouched[slots] = False
    assert bool(pools[2][untouched].isnan().all()), "the kernel wrote outside the tokens' slots"


@pytest.mark.parametrize("t", [1, 33])
def test_silu_mul(t: int) -> None:
    gate_up = (torch.randn(t, 2 * 1536, generator=torch.Generator().manual_seed(t)) * 4).to(BF16)
    assert_close_ulp(cpu_layer_ops.silu_mul(gate_up), layer_ops.silu_mul(gate_up))


def test_other_dtypes_take_the_reference() -> None:
    for x, w in ((torch.randn(3, 64, dtype=torch.float16), torch.rand(64, dtype=torch.float16)),
                 (torch.randn(3, 64), torch.rand(64).to(BF16))):  # fp16; mixed fp32 / bf16
        out, res = cpu_layer_ops.add_rmsnorm(x, None, w, 1e-6)
        want, _ = layer_ops.add_rmsnorm(x, None, w, 1e-6)
        assert torch.equal(out, want) and res is x


FP32 = {"rtol": 2e-6, "atol": 1e-6}


@pytest.mark.parametrize("t", [1, 7, 300])
def test_fp32_ops_follow_the_reference(t: int) -> None:
    """fp32 models (dtype auto on AVX2 / AVX-512 without BF16, the quantized linears) go through the
    same fused ops in fp32 arithmetic."""
    # the fused path really runs (a missing dispatch would fall back to the reference and pass)
    assert all(cpu_layer_ops._fn(n, torch.zeros(1)) is not None
               for n in ("rg_add_rmsnorm", "rg_rope_write_kv", "rg_silu_mul"))
    g = torch.Generator().manual_seed(t)
    x, res, w = torch.randn(t, 576, generator=g) * 3, torch.randn(t, 576, generator=g), torch.rand(576, generator=g) + 0.5
    want_out, want_res = layer_ops.add_rmsnorm(x, res.clone(), w, 1e-5)
    got_out, got_res = cpu_layer_ops.add_rmsnorm(x, res.clone(), w, 1e-5)
    torch.testing.assert_close(got_res, want_res, **FP32)
    torch.testing.assert_close(got_out, want_out, **FP32)
    torch.testing.assert_close(cpu_layer_ops.add_rmsnorm(x, None, w, 1e-5)[0], layer_ops.add_rmsnorm(x, None, w, 1e-5)[0], **FP32)
    h, kvh, d = 9, 3, 64
    qkv = torch.randn(t, (h + 2 * kvh) * d, generator=g)
    ang = torch.rand(t, d // 2, generator=g) * 100
    cos, sin = torch.cat([ang.cos(), ang.cos()], -1), torch.cat([ang.sin(), ang.sin()], -1)
    slots = torch.randperm(4 * t, generator=g)[:t]
    pools = [torch.full((4 * t, kvh, d), float("nan")) for _ in range(4)]
    want_q = layer_ops.rope_write_kv(qkv, cos, sin, pools[0], pools[1], slots, h, reference.write_kv)
    got_q = cpu_layer_ops.rope_write_kv(qkv, cos, sin, pools[2], pools[3], slots, h, reference.write_kv)
    torch.testing.assert_close(got_q, want_q, **FP32)
    torch.testing.assert_close(pools[2][slots], pools[0][slots], **FP32)
    assert torch.equal(pools[3][slots], pools[1][slots])  # v is copied
    assert int(pools[2].isnan().all(-1).all(-1).sum()) == 3 * t, "the kernel wrote outside the tokens' slots"
    gate_up = torch.randn(t, 2 * 1536, generator=g) * 4
    gate_up[0, :4] = torch.tensor([-200.0, 200.0, 0.0, -0.0])  # exp(-x) overflows to inf: silu -> -0
    torch.testing.assert_close(cpu_layer_ops.silu_mul(gate_up), layer_ops.silu_mul(gate_up), **FP32)


# 3072 outputs: 48 tiles a thread at two threads, so each walks several 16-tile blocks
@pytest.mark.parametrize("n,k,bias", [(960, 576, True), (576, 1536, False), (64, 32, False), (3072, 576, True)])
def test_linear_small_matches_torch(n: int, k: int, bias: bool) -> None:
    g = torch.Generator().manual_seed(n + k)
    w = torch.randn(n, k, generator=g).to(BF16)
    b = torch.randn(n, generator=g).to(BF16) if bias else None
    packed = cpu_layer_ops.pack_linear_small(w)
    if packed is None:
        pytest.skip("this CPU has no AVX512-BF16: oneDNN takes every batch size")
    for m in (1, 2, 3, 6, 16, 17, 45, 100):  # AMX: passes of 32 rows, two tiles of 16 each
        x = torch.randn(m, k, generator=g).to(BF16)
        got, want = cpu_layer_ops.linear_small(x, packed, b).float(), torch.nn.functional.linear(x, w, b).float()
        # both sum in fp32 and round once; only the order of the sum differs, which moves a result
        # by one bf16 ulp, or by fp32 rounding of the sum where terms cancel (scale: sum of |terms|)
        scale = x.float().abs() @ w.float().abs().T
        assert bool(((got - want).abs() <= want.abs() * 2.0 ** -7 * 1.01 + scale * 2.0 ** -16).all())
        assert (got != want).float().mean() <= 0.01


def test_linear_small_without_amx_matches_torch() -> None:
    """The vdpbf16ps loop (CPUs with AVX512-BF16 but no AMX), reached with RADIXGEN_NO_AMX=1 in a
    fresh process: the choice is made once per process."""
    code = """
import torch
from radixgen.kernels import cpu_layer_ops
from tests.kernels.test_layer_ops import assert_close_ulp
assert cpu_layer_ops.small_rows() == 2, cpu_layer_ops.small_rows()
g = torch.Generator().manual_seed(0)
w, b = torch.randn(960, 576, generator=g).to(torch.bfloat16), torch.randn(960, generator=g).to(torch.bfloat16)
packed = cpu_layer_ops.pack_linear_small(w)
for m in (1, 2, 5):
    x = torch.randn(m, 576, generator=g).to(torch.bfloat16)
    assert_close_ulp(cpu_layer_ops.linear_small(x, packed, b), torch.nn.functional.linear(x, w, b), 0.01)
"""
    if cpu_layer_ops.small_rows() <= 2:  # 2: no AMX, so the tests above ran the loop; 0: neither
        pytest.skip("no AMX on this CPU")
    env = {**os.environ, "RADIXGEN_NO_AMX": "1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          cwd=Path(__file__).parents[2], timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("dtype", [torch.float32, BF16])
def test_argmax_is_the_first_maximum(dtype: torch.dtype) -> None:
    x = torch.randn(5, 1000, generator=torch.Generator().manual_seed(0)).to(dtype)
    x[0, [17, 400, 999]] = 50.0          # ties: the first wins
    x[1] = float("-inf")                 # nothing allowed: index 0, as torch gives
    x[2, 996:] = 60.0                    # in the scalar tail past the last 16 lanes
    x[3, 3] = float("inf")
    x4 = x[4:, :37]                      # a short row, strided
    assert cpu.argmax(x).tolist() == x.max(dim=-1).indices.tolist() == [17, 0, 996, 3, int(x[4].argmax())]
    assert torch.equal(cpu.argmax(x4), x4.max(dim=-1).indices)


@pytest.mark.parametrize("t", [1, 300])
def test_fp32_rope_into_bf16_pools_rounds_as_torch(t: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """kv_cache_dtype bfloat16 under an fp32 model: q stays fp32, K/V are rounded to bf16 as they are
    stored, exactly as the reference's cast (round to nearest even)."""
    g = torch.Generator().manual_seed(t)
    h, kvh, d = 9, 3, 64
    qkv = torch.randn(t, (h + 2 * kvh) * d, generator=g)
    ang = torch.rand(t, d // 2, generator=g) * 100
    cos, sin = torch.cat([ang.cos(), ang.cos()], -1), torch.cat([ang.sin(), ang.sin()], -1)
    slots = torch.randperm(4 * t, generator=g)[:t]
    pools = [torch.full((4 * t, kvh, d), float("nan"), dtype=torch.bfloat16) for _ in range(4)]
    want_q = layer_ops.rope_write_kv(qkv, cos, sin, pools[0], pools[1], slots, h, reference.write_kv)
    monkeypatch.setattr(layer_ops, "rope_write_kv", None)  # the fused kernel must take it, not the reference
    got_q = cpu_layer_ops.rope_write_kv(qkv, cos, sin, pools[2], pools[3], slots, h, reference.write_kv)
    assert got_q.dtype == torch.float32
    torch.testing.assert_close(got_q, want_q, **FP32)
    # the rotated k may differ from the reference's in its last fp32 bit, so at most one bf16 step
    torch.testing.assert_close(pools[2][slots].float(), pools[0][slots].float(), rtol=2 ** -7, atol=1e-6)
    assert torch.equal(pools[3][slots], pools[1][slots])  # v: the same fp32 values, rounded alike
    assert int(pools[2].isnan().all(-1).all(-1).sum()) == 3 * t, "the kernel wrote outside the tokens' slots"
