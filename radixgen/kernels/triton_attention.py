"""Triton kernels over the paged KV pool: the same four functions as `reference`, for CUDA.

Shapes: T new tokens, B requests, H query heads, KVH kv heads (GQA group g = H / KVH), D head dim,
S pool slots. Keys are found through req_to_slot[req_rows[b], j], so any page size works. The
kernels compute in fp32 (online softmax, flash-attention style) and feed tl.dot the pool's dtype.
Tests run them on the CPU under TRITON_INTERPRET=1; the interpreter keeps bf16 as raw uint16 and
gets bf16 arithmetic and tl.dot wrong, so there (UPCAST) operands are widened to fp32 first.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from .meta import AttnMeta
from .reference import argmax
from .triton_mask import apply_token_bitmask

__all__ = ["write_kv", "decode_attention", "extend_attention", "apply_token_bitmask", "argmax"]

DECODE_BLOCK_N = 64     # keys per step of a decode program
DECODE_SPLIT_KEYS = 256  # each decode split covers at least this many keys of the longest request
MAX_SPLITS = 16
EXTEND_BLOCK_M, EXTEND_BLOCK_N = 32, 64


def _alloc(*shape: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Uninitialised buffers the kernels fill; tests swap in NaN-filled ones to catch gaps."""
    return torch.empty(*shape, dtype=dtype, device=device)


def _upcast() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@triton.jit
def _write_kv_kernel(K, V, KPool, VPool, Slots, stride_kt, stride_kh, stride_vt, stride_vh,
                     stride_ps, stride_ph, num_heads, head_dim,
                     BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr):
    t = tl.program_id(0).to(tl.int64)  # one new token: all its kv heads
    slot = tl.load(Slots + t).to(tl.int64)
    h = tl.arange(0, BLOCK_H)[:, None]
    d = tl.arange(0, BLOCK_D)[None, :]
    mask = (h < num_heads) & (d < head_dim)
    k = tl.load(K + t * stride_kt + h * stride_kh + d, mask=mask)
    v = tl.load(V + t * stride_vt + h * stride_vh + d, mask=mask)
    tl.store(KPool + slot * stride_ps + h * stride_ph + d, k.to(KPool.dtype.element_ty), mask=mask)
    tl.store(VPool + slot * stride_ps + h * stride_ph + d, v.to(VPool.dtype.element_ty), mask=mask)


@triton.jit
def _attend_block(q, m, l, acc, KPool, VPool, slots, kvh, offs_d, mask_kv, visible,
                  sm_scale, softcap, stride_ps, stride_ph, UPCAST: tl.constexpr, SOFTCAP: tl.constexpr):
    """One online-softmax step: q [M, BD] against the keys at `slots` [N]; visible [M, N]. With
    SOFTCAP the scaled scores become softcap * tanh(s / softcap) (Gemma 2), tanh written with exp
    (saturates cleanly at +-1) so the interpreter and every Triton version run it."""
    kv_off = slots[:, None] * stride_ps + kvh * stride_ph + offs_d[None, :]  # [N, BD]
    k = tl.load(KPool + kv_off, mask=mask_kv, other=0.0)
    v = tl.load(VPool + kv_off, mask=mask_kv, other=0.0)
    if UPCAST:
        k = k.to(tl.float32)
        v = v.to(tl.float32)
    # tl.dot wants one operand dtype (a bf16 pool under fp32 queries is widened); "ieee" keeps fp32
    # dots out of TF32, and is moot for bf16 operands
    s = tl.dot(q, tl.trans(k.to(q.dtype)), input_precision="ieee") * sm_scale  # [M, N] fp32
    if SOFTCAP:
        s = softcap * (1.0 - 2.0 / (tl.exp(2.0 * s / softcap) + 1.0))
    s = tl.where(visible, s, float("-inf"))
    m_new = tl.maximum(m, tl.max(s, 1))
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)       # rows with nothing visible yet
    alpha = tl.exp(m - m_safe)
    p = tl.exp(s - m_safe[:, None])
    l = l * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision="ieee")
    return m_new, l, acc


@triton.jit
def _decode_split_kernel(Q, KPool, VPool, ReqToSlot, ReqRows, SeqLens, MidO, MidLse, sm_scale, softcap, window,
                         stride_qb, stride_qh, stride_ps, stride_ph, stride_table,
                         stride_mb, stride_mh, stride_lb, stride_lh, group, head_dim, num_splits,
                         BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                         UPCAST: tl.constexpr, SOFTCAP: tl.constexpr):
    """Program (b, kv head, split): the g query heads of one kv head over one slice of the keys (of
    the last `window` ones under a sliding window, window > 0)."""
    b = tl.program_id(0).to(tl.int64)
    kvh = tl.program_id(1)
    split = tl.program_id(2)
    seq_len = tl.load(SeqLens + b)
    row = tl.load(ReqRows + b).to(tl.int64)
    lo = tl.where(window > 0, tl.maximum(seq_len - window, 0), 0)
    per_split = tl.cdiv(seq_len - lo, num_splits)
    start = lo + split * per_split
    end = tl.minimum(start + per_split, seq_len)
    offs_h = tl.arange(0, BLOCK_H)
    offs_d = tl.arange(0, BLOCK_D)
    heads = kvh * group + offs_h
    mask_h = offs_h < group
    mask_d = offs_d < head_dim
    q = tl.load(Q + b * stride_qb + heads[:, None] * stride_qh + offs_d[None, :],
                mask=mask_h[:, None] & mask_d[None, :], other=0.0)  # [BLOCK_H, BLOCK_D]
    if UPCAST:
        q = q.to(tl.float32)
    m = tl.full([BLOCK_H], float("-inf"), tl.float32)
    l = tl.zeros([BLOCK_H], tl.float32)
    acc = tl.zeros([BLOCK_H, BLOCK_D], tl.float32)
    for n0 in range(start, end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        mask_n = offs_n < end
        slots = tl.load(ReqToSlot + row * stride_table + offs_n, mask=mask_n, other=0).to(tl.int64)
        m, l, acc = _attend_block(q, m, l, acc, KPool, VPool, slots, kvh, offs_d,
                                  mask_n[:, None] & mask_d[None, :], mask_n[None, :] & mask_h[:, None],
                                  sm_scale, softcap, stride_ps, stride_ph, UPCAST, SOFTCAP)
    # an empty split (start >= end) leaves l = 0: lse = -inf, weight 0 in the combine
    lse = tl.where(l > 0, m + tl.log(tl.where(l > 0, l, 1.0)), float("-inf"))
    out = acc / tl.where(l > 0, l, 1.0)[:, None]
    mid = b * stride_mb + heads * stride_mh + split * BLOCK_D  # MidO [B, H, splits, BLOCK_D]
    tl.store(MidO + mid[:, None] + offs_d[None, :], out, mask=mask_h[:, None])
    tl.store(MidLse + b * stride_lb + heads * stride_lh + split, lse, mask=mask_h)  # [B, H, splits]


@triton.jit
def _decode_combine_kernel(MidO, MidLse, O, stride_mb, stride_mh, stride_lb, stride_lh,
                           stride_ob, stride_oh, head_dim, num_splits,
                           BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr):
    """Program (b, head): o = sum_s softmax(lse)_s * o_s over the splits."""
    b = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1)
    offs_s = tl.arange(0, BLOCK_S)
    offs_d = tl.arange(0, BLOCK_D)
    mask_s = offs_s < num_splits
    lse = tl.load(MidLse + b * stride_lb + h * stride_lh + offs_s, mask=mask_s, other=float("-inf"))
    w = tl.exp(lse - tl.max(lse, 0))  # split 0 of a non-empty request is never empty
    w = w / tl.sum(w, 0)
    o = tl.load(MidO + b * stride_mb + h * stride_mh + offs_s[:, None] * BLOCK_D + offs_d[None, :],
                mask=mask_s[:, None], other=0.0)  # [BLOCK_S, BLOCK_D]
    out = tl.sum(w[:, None] * o, 0)
    tl.store(O + b * stride_ob + h * stride_oh + offs_d, out.to(O.dtype.element_ty), mask=offs_d < head_dim)


@triton.jit
def _extend_kernel(Q, KPool, VPool, O, ReqToSlot, ReqRows, PrefixLens, ExtendLens, ExtendStart,
                   sm_scale, softcap, window, stride_qt, stride_qh, stride_ot, stride_oh, stride_ps, stride_ph,
                   stride_table, group, head_dim, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                   BLOCK_D: tl.constexpr, UPCAST: tl.constexpr, SOFTCAP: tl.constexpr):
    """Program (b, head, block of new tokens): the block attends to the request's prefix and
    causally to the new tokens, all read from the pool (their K/V are written before); under a
    sliding window (window > 0) each query sees only its last `window` keys."""
    b = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1)
    first = tl.program_id(2) * BLOCK_M
    extend_len = tl.load(ExtendLens + b)
    if first >= extend_len:
        return
    prefix = tl.load(PrefixLens + b)
    tok0 = tl.load(ExtendStart + b)
    row = tl.load(ReqRows + b).to(tl.int64)
    kvh = h // group
    offs_m = first + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    mask_m = offs_m < extend_len
    mask_d = offs_d < head_dim
    q = tl.load(Q + (tok0 + offs_m[:, None]) * stride_qt + h * stride_qh + offs_d[None, :],
                mask=mask_m[:, None] & mask_d[None, :], other=0.0)  # [BLOCK_M, BLOCK_D]
    if UPCAST:
        q = q.to(tl.float32)
    q_pos = prefix + offs_m  # each query's position: it sees keys 0 ..= q_pos
    key_end = prefix + tl.minimum(extend_len, first + BLOCK_M)
    win = tl.where(window > 0, window, key_end + 1)  # no window: one wider than any query's reach
    key_begin = tl.maximum(prefix + first - win + 1, 0)  # the block's first query sees the earliest key
    m = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    for n0 in range(key_begin, key_end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        mask_n = offs_n < key_end
        slots = tl.load(ReqToSlot + row * stride_table + offs_n, mask=mask_n, other=0).to(tl.int64)
        visible = mask_n[None, :] & (offs_n[None, :] <= q_pos[:, None]) & (offs_n[None, :] > q_pos[:, None] - win)
        m, l, acc = _attend_block(q, m, l, acc, KPool, VPool, slots, kvh, offs_d,
                                  mask_n[:, None] & mask_d[None, :], visible,
                                  sm_scale, softcap, stride_ps, stride_ph, UPCAST, SOFTCAP)
    out = acc / l[:, None]  # every query sees at least key 0
    tl.store(O + (tok0 + offs_m[:, None]) * stride_ot + h * stride_oh + offs_d[None, :],
             out.to(O.dtype.element_ty), mask=mask_m[:, None] & mask_d[None, :])


def _check(q: torch.Tensor, k_pool: torch.Tensor, v_pool: torch.Tensor) -> None:
    if q.stride(-1) != 1 or k_pool.stride(-1) != 1 or k_pool.stride() != v_pool.stride():
        raise ValueError("q and the pools need unit stride on D, and k_pool/v_pool the same layout")
    if q.shape[1] % k_pool.shape[1] != 0:
        raise ValueError(f"{q.shape[1]} query heads are not a multiple of {k_pool.shape[1]} kv heads")


def write_kv(k_pool: torch.Tensor, v_pool: torch.Tensor, out_slots: torch.Tensor,
             k: torch.Tensor, v: torch.Tensor) -> None:
    """k_pool, v_pool: [S, KVH, D]; out_slots: int64 [T]; k, v: [T, KVH, D]. Writes in place."""
    t, kvh, d = k.shape
    if t == 0:
        return
    _check(k, k_pool, v_pool)
    _write_kv_kernel[(t,)](k, v, k_pool, v_pool, out_slots, k.stride(0), k.stride(1), v.stride(0),
                           v.stride(1), k_pool.stride(0), k_pool.stride(1), kvh, d,
                           BLOCK_H=triton.next_power_of_2(kvh), BLOCK_D=triton.next_power_of_2(d))


def decode_attention(q: torch.Tensor, k_pool: torch.Tensor, v_pool: torch.Tensor,
                     meta: AttnMeta, sm_scale: float) -> torch.Tensor:
    """q: [B, H, D], one token per request, whose K/V are already in the pool -> [B, H, D].
    Split-K: each (request, kv head) is cut into `splits` key slices whose partial softmaxes are
    merged by log-sum-exp, so a few long requests still fill the GPU."""
    _check(q, k_pool, v_pool)
    b, h, d = q.shape
    kvh = k_pool.shape[1]
    block_d = triton.next_power_of_2(d)
    splits = max(1, min(MAX_SPLITS, triton.cdiv(meta.max_seq, DECODE_SPLIT_KEYS)))
    mid_o = _alloc(b, h, splits, block_d, dtype=torch.float32, device=q.device)
    mid_lse = _alloc(b, h, splits, dtype=torch.float32, device=q.device)
    _decode_split_kernel[(b, kvh, splits)](
        q, k_pool, v_pool, meta.req_to_slot, meta.req_rows, meta.seq_lens, mid_o, mid_lse, sm_scale, meta.softcap or 1.0,
        meta.window,
        q.stride(0), q.stride(1), k_pool.stride(0), k_pool.stride(1), meta.req_to_slot.stride(0),
        mid_o.stride(0), mid_o.stride(1), mid_lse.stride(0), mid_lse.stride(1), h // kvh, d, splits,
        BLOCK_H=max(16, triton.next_power_of_2(h // kvh)), BLOCK_N=DECODE_BLOCK_N, BLOCK_D=block_d,
        UPCAST=_upcast(), SOFTCAP=meta.softcap > 0)
    out = _alloc(*q.shape, dtype=q.dtype, device=q.device)
    _decode_combine_kernel[(b, h)](
        mid_o, mid_lse, out, mid_o.stride(0), mid_o.stride(1), mid_lse.stride(0), mid_lse.stride(1),
        out.stride(0), out.stride(1), d, splits,
        BLOCK_S=triton.next_power_of_2(splits), BLOCK_D=block_d)
    return out


def extend_attention(q: torch.Tensor, k_pool: torch.Tensor, v_pool: torch.Tensor,
                     meta: AttnMeta, sm_scale: float) -> torch.Tensor:
    """q: [T, H, D] new tokens (K/V already in the pool), prefix + causal -> [T, H, D]."""
    _check(q, k_pool, v_pool)
    t, h, d = q.shape
    out = _alloc(*q.shape, dtype=q.dtype, device=q.device)
    if t == 0:
        return out
    grid = (meta.batch_size, h, triton.cdiv(meta.max_extend, EXTEND_BLOCK_M))
    _extend_kernel[grid](
        q, k_pool, v_pool, out, meta.req_to_slot, meta.req_rows, meta.prefix_lens, meta.extend_lens,
        meta.extend_start, sm_scale, meta.softcap or 1.0, meta.window, q.stride(0), q.stride(1), out.stride(0), out.stride(1),
        k_pool.stride(0), k_pool.stride(1), meta.req_to_slot.stride(0), h // k_pool.shape[1], d,
        BLOCK_M=EXTEND_BLOCK_M, BLOCK_N=EXTEND_BLOCK_N, BLOCK_D=triton.next_power_of_2(d),
        UPCAST=_upcast(), SOFTCAP=meta.softcap > 0)
    return out
