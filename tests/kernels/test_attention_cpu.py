"""The C++ CPU kernels (kernels/cpu.py) against the torch reference."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from kernel_cases import DECODE_CASES, EXTEND_CASES, Case, make, random_bitmask, tolerance
from radixgen.kernels import cpu, get_backend, reference

DTYPES = [torch.float32, torch.bfloat16]
# head dims the AVX-512 kernels specialise (64, 128) and a generic one (24), GQA 1, 3 and 8
WIDE_CASES = [
    Case((200, 0, 31), (1, 1, 1), 9, 3, 64, 1),
    Case((90, 7), (1, 1), 16, 2, 128, 16),
    Case((40, 0), (5, 16), 9, 3, 64, 16),
    Case((12, 3), (9, 4), 8, 8, 128, 1),
]


@pytest.fixture(scope="module", autouse=True)
def built():
    if not cpu.is_available():
        pytest.skip("the C++ kernel did not build here (see the warning)")


def check(case: Case, dtype: torch.dtype, q_dtype: torch.dtype | None = None, window: int = 0,
          softcap: float = 0.0) -> None:
    q, k_pool, v_pool, meta = make(case, dtype)
    if softcap:
        q = q * 3  # scores of several units: a cap of 1.5 bends them
    meta = dataclasses.replace(meta, window=window, softcap=softcap)
    q = q.to(q_dtype or dtype)
    scale = 1 / math.sqrt(case.head_dim)
    ref_fn, cpu_fn = ((reference.decode_attention, cpu.decode_attention) if meta.is_decode
                      else (reference.extend_attention, cpu.extend_attention))
    got = cpu_fn(q, k_pool, v_pool, meta, scale)
    assert got.dtype == q.dtype and got.shape == q.shape
    # the reference wants one dtype: widening the pool is exact, and what the kernel computes in
    want = ref_fn(q, k_pool.to(q.dtype), v_pool.to(q.dtype), meta, scale)
    torch.testing.assert_close(got.float(), want.float(), **tolerance(q.dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", DECODE_CASES + EXTEND_CASES + WIDE_CASES, ids=str)
def test_matches_reference(case, dtype, poison):
    poison(cpu)
    check(case, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", [DECODE_CASES[3], WIDE_CASES[0], WIDE_CASES[2]], ids=str)
def test_key_splits(case, dtype, poison, monkeypatch):
    """Forcing the split-K path (used when few requests cannot fill the threads)."""
    poison(cpu)
    monkeypatch.setattr(cpu, "_num_splits", lambda *args: 3)
    check(case, dtype)


@pytest.mark.parametrize("window", [1, 5, 40])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", DECODE_CASES[1:5] + EXTEND_CASES[1:] + WIDE_CASES, ids=str)
def test_sliding_window_matches_reference(case, dtype, window, poison):
    """Every path (streamed, SDPA for long extends, the AVX-512 variants where built) under a window."""
    poison(cpu)
    check(case, dtype, window=window)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_sliding_window_with_key_splits(dtype, poison, monkeypatch):
    poison(cpu)
    monkeypatch.setattr(cpu, "_num_splits", lambda *args: 3)
    check(DECODE_CASES[4], dtype, window=100)
    check(WIDE_CASES[2], dtype, window=7)


@pytest.mark.parametrize("window", [0, 5])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", DECODE_CASES[1:5] + EXTEND_CASES[1:] + WIDE_CASES, ids=str)
def test_softcap_matches_reference(case, dtype, window, poison, monkeypatch):
    """Gemma 2's soft-capped scores: every extend streams through the kernel (SDPA cannot cap), with
    and without key splits and a window."""
    poison(cpu)
    monkeypatch.setattr(cpu, "_sdpa_extend", None)  # must not be reached
    check(case, dtype, window=window, softcap=1.5)
    monkeypatch.setattr(cpu, "_num_splits", lambda *args: 3)
    check(case, dtype, window=window, softcap=1.5)


def test_fp32_queries_on_bf16_pool():
    check(WIDE_CASES[0], torch.bfloat16, q_dtype=torch.float32)


@pytest.mark.parametrize("case", [EXTEND_CASES[1], EXTEND_CASES[2], Case((0,), (40,), 9, 3, 64, 1),
                                  Case((10, 20), (24, 24), 8, 2, 32, 16)], ids=str)
def test_long_extend_uses_sdpa_path(case, poison, monkeypatch):
    """Extends past STREAM_MAX_EXTEND go through the kernel's gather + SDPA: causal flag or mask,
    ragged (padded queries) or uniform (a view)."""
    poison(cpu)
    monkeypatch.setattr(cpu, "STREAM_MAX_EXTEND", 2)
    check(case, torch.bfloat16)


def test_falls_back_to_reference(monkeypatch):
    monkeypatch.setattr(cpu, "load_library", lambda: None)
    check(WIDE_CASES[2], torch.float32)


def test_write_kv_and_bitmask():
    q, k_pool, v_pool, meta = make(EXTEND_CASES[2], torch.bfloat16)
    k, v = torch.randn(2, q.shape[0], *k_pool.shape[1:]).unbind(0)
    cpu.write_kv(k_pool, v_pool, meta.out_slots, k, v)
    assert torch.equal(k_pool[meta.out_slots], k.bfloat16())
    for dtype in DTYPES:
        logits = torch.randn(4, 1000).to(dtype)
        mask = random_bitmask(4, 1000, seed=3)
        expected = logits.clone()
        reference.apply_token_bitmask(expected, mask)
        cpu.apply_token_bitmask(logits, mask)
        assert torch.equal(logits, expected)


def test_get_backend():
    assert get_backend("cpu") is cpu
    assert get_backend(torch.device("cpu"), "reference") is reference
    with pytest.raises(ValueError, match="unknown attention backend"):
        get_backend("cpu", "flash")
    with pytest.raises(ValueError, match="runs on the CPU"):
        get_backend("cuda", "cpu")
