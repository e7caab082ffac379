"""The Triton kernels against the torch reference: on the CPU under TRITON_INTERPRET=1 (set by
conftest.py), on the GPU where there is one. Output buffers are NaN-poisoned to catch gaps."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from kernel_cases import DECODE_CASES, EXTEND_CASES, Case, make, random_bitmask, tolerance
from radixgen.kernels import get_backend, reference

DTYPES = [torch.float32, torch.bfloat16]


def run_both(kernels, case: Case, dtype: torch.dtype, device: torch.device, window: int = 0,
             softcap: float = 0.0):
    q, k_pool, v_pool, meta = make(case, dtype, device)
    if softcap:
        q = q * 3  # scores of several units: a cap of 1.5 bends them
    meta = dataclasses.replace(meta, window=window, softcap=softcap)
    scale = 1 / math.sqrt(case.head_dim)
    name = "decode_attention" if meta.is_decode else "extend_attention"
    got = getattr(kernels, name)(q, k_pool, v_pool, meta, scale)
    want = getattr(reference, name)(q, k_pool, v_pool, meta, scale)
    assert got.dtype == q.dtype and got.shape == q.shape
    return got.float(), want.float()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", DECODE_CASES, ids=str)
def test_decode(triton_kernels, case, dtype, device, poison):
    poison(triton_kernels)
    got, want = run_both(triton_kernels, case, dtype, device)
    torch.testing.assert_close(got, want, **tolerance(dtype))


@pytest.mark.parametrize("window", [1, 5, 40])
@pytest.mark.parametrize("case", DECODE_CASES[1:5] + EXTEND_CASES[1:4], ids=str)
def test_sliding_window(triton_kernels, case, window, device, poison):
    poison(triton_kernels)
    got, want = run_both(triton_kernels, case, torch.float32, device, window)
    torch.testing.assert_close(got, want, **tolerance(torch.float32))


@pytest.mark.parametrize("window", [0, 5])
@pytest.mark.parametrize("case", DECODE_CASES[1:5] + EXTEND_CASES[1:4], ids=str)
def test_softcap(triton_kernels, case, window, device, poison):
    """Gemma 2's soft-capped scores, with and without a sliding window."""
    poison(triton_kernels)
    got, want = run_both(triton_kernels, case, torch.float32, device, window, softcap=1.5)
    torch.testing.assert_close(got, want, **tolerance(torch.float32))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", EXTEND_CASES, ids=str)
def test_extend(triton_kernels, case, dtype, device, poison):
    poison(triton_kernels)
    got, want = run_both(triton_kernels, case, dtype, device)
    torch.testing.assert_close(got, want, **tolerance(dtype))


@pytest.mark.parametrize("kv_dtype", DTYPES, ids=str)
@pytest.mark.parametrize("pool_dtype", DTYPES, ids=str)
def test_write_kv(triton_kernels, pool_dtype, kv_dtype, device):
    q, k_pool, v_pool, meta = make(EXTEND_CASES[2], pool_dtype, device)
    k, v = torch.randn(2, q.shape[0], *k_pool.shape[1:], device=device).to(kv_dtype).unbind(0)
    want_k, want_v = k_pool.clone(), v_pool.clone()
    reference.write_kv(want_k, want_v, meta.out_slots, k, v)
    triton_kernels.write_kv(k_pool, v_pool, meta.out_slots, k, v)
    if kv_dtype == pool_dtype:  # a plain copy, untouched slots included
        assert torch.equal(k_pool, want_k) and torch.equal(v_pool, want_v)
    else:  # fp32 -> bf16: the interpreter truncates where GPUs round to nearest, 1 ulp apart
        torch.testing.assert_close(k_pool, want_k, atol=0, rtol=2 ** -7)
        torch.testing.assert_close(v_pool, want_v, atol=0, rtol=2 ** -7)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_apply_token_bitmask(triton_kernels, dtype, device):
    logits = torch.randn(3, 1500, device=device).to(dtype)  # vocab not a multiple of 32 or the block
    mask = random_bitmask(3, 1500, seed=5).to(device)
    want = logits.clone()
    reference.apply_token_bitmask(want, mask)
    triton_kernels.apply_token_bitmask(logits, mask)
    assert torch.equal(logits, want)


def test_get_backend_picks_triton_on_cuda(triton_kernels):
    assert get_backend("cuda") is triton_kernels
    assert get_backend("cpu", "triton") is triton_kernels


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("decode", [True, False], ids=["decode", "extend"])
def test_large_on_gpu(triton_kernels, decode):
    """Shapes too big for the interpreter: SmolLM2 heads, 4k context, 16-slot pages."""
    ext = (1,) * 32 if decode else (300, 1, 77, 512)
    pre = tuple(range(100, 4100, 125)) if decode else (0, 3000, 100, 1000)
    got, want = run_both(triton_kernels, Case(pre, ext, 9, 3, 64, 16), torch.bfloat16, torch.device("cuda"))
    torch.testing.assert_close(got, want, **tolerance(torch.bfloat16))
