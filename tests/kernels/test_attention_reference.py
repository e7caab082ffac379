"""The torch reference against a per-request, per-head loop written from the definition."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from kernel_cases import DECODE_CASES, EXTEND_CASES, make, random_bitmask
from radixgen.kernels import reference


def naive_attention(q, k_pool, v_pool, meta, sm_scale):
    """Token i of request b, head h: softmax over keys 0 ..= prefix_len + i of its slot row (only the
    last meta.window of them under a sliding window), of scores soft-capped where meta.softcap."""
    out = torch.empty_like(q, dtype=torch.float64)
    group = q.shape[1] // k_pool.shape[1]
    t = 0
    for b in range(meta.batch_size):
        slots = meta.req_to_slot[meta.req_rows[b]].long()
        prefix, extend = int(meta.prefix_lens[b]), int(meta.extend_lens[b])
        for i in range(extend):
            first = max(0, prefix + i + 1 - meta.window) if meta.window else 0
            keys = slots[first: prefix + i + 1]
            for h in range(q.shape[1]):
                k = k_pool[keys, h // group].double()  # [N, D]
                v = v_pool[keys, h // group].double()
                s = k @ q[t, h].double() * sm_scale
                if meta.softcap:
                    s = meta.softcap * torch.tanh(s / meta.softcap)
                w = torch.softmax(s, 0)
                out[t, h] = w @ v
            t += 1
    return out


@pytest.mark.parametrize("case", DECODE_CASES[:3] + EXTEND_CASES[:3], ids=str)
def test_reference_matches_definition(case):
    q, k_pool, v_pool, meta = make(case, torch.float32)
    scale = 1 / math.sqrt(case.head_dim)
    fn = reference.decode_attention if meta.is_decode else reference.extend_attention
    torch.testing.assert_close(fn(q, k_pool, v_pool, meta, scale).double(),
                               naive_attention(q, k_pool, v_pool, meta, scale), atol=1e-5, rtol=1e-4)


def test_reference_write_kv_and_bitmask():
    q, k_pool, v_pool, meta = make(EXTEND_CASES[2], torch.float32)
    k, v = torch.randn(2, *q.shape[:1], *k_pool.shape[1:]).unbind(0)
    reference.write_kv(k_pool, v_pool, meta.out_slots, k, v)
    assert torch.equal(k_pool[meta.out_slots], k) and torch.equal(v_pool[meta.out_slots], v)
    logits = torch.randn(3, 70)
    mask = random_bitmask(3, 70)
    expected = logits.clone()
    for b in range(3):
        for j in range(70):
            if not (int(mask[b, j // 32]) >> (j % 32)) & 1:
                expected[b, j] = float("-inf")
    reference.apply_token_bitmask(logits, mask)
    assert torch.equal(logits, expected)


@pytest.mark.parametrize("window", [1, 4, 16])
@pytest.mark.parametrize("case", DECODE_CASES[1:4] + EXTEND_CASES[1:4], ids=str)
def test_reference_sliding_window_matches_definition(case, window):
    q, k_pool, v_pool, meta = make(case, torch.float32)
    meta = dataclasses.replace(meta, window=window)
    scale = 1 / math.sqrt(case.head_dim)
    fn = reference.decode_attention if meta.is_decode else reference.extend_attention
    torch.testing.assert_close(fn(q, k_pool, v_pool, meta, scale).double(),
                               naive_attention(q, k_pool, v_pool, meta, scale), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("window", [0, 4])
@pytest.mark.parametrize("case", DECODE_CASES[1:4] + EXTEND_CASES[1:4], ids=str)
def test_reference_softcap_matches_definition(case, window):
    """Gemma 2's soft-capped scores; a cap of 1.5 is well inside the scores' range, so it matters."""
    q, k_pool, v_pool, meta = make(case, torch.float32)
    q = q * 3  # scores of several units: the cap bends them
    meta = dataclasses.replace(meta, window=window, softcap=1.5)
    scale = 1 / math.sqrt(case.head_dim)
    fn = reference.decode_attention if meta.is_decode else reference.extend_attention
    got = fn(q, k_pool, v_pool, meta, scale).double()
    torch.testing.assert_close(got, naive_attention(q, k_pool, v_pool, meta, scale), atol=1e-5, rtol=1e-4)
    uncapped = fn(q, k_pool, v_pool, dataclasses.replace(meta, softcap=0.0), scale).double()
    assert (got - uncapped).abs().max() > 1e-2
