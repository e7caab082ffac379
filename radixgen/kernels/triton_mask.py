"""Triton kernel applying a packed int32 vocabulary bitmask to a batch of logits (constrained decoding)."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK_V = 1024  # logits per program


@triton.jit
def _bitmask_kernel(Logits, Mask, stride_l, stride_m, vocab, BLOCK: tl.constexpr):
    """Program (b, block of the vocab): logit j becomes -inf unless bit j % 32 of word j // 32 is set."""
    b = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    in_vocab = offs < vocab
    words = tl.load(Mask + b * stride_m + offs // 32, mask=in_vocab, other=-1)
    allowed = ((words >> (offs % 32)) & 1) != 0
    # -inf built in fp32 then cast: the interpreter keeps bf16 as raw bits and mis-fills it directly
    neg_inf = tl.full([BLOCK], float("-inf"), tl.float32).to(Logits.dtype.element_ty)
    tl.store(Logits + b * stride_l + offs, neg_inf, mask=in_vocab & ~allowed)


def apply_token_bitmask(logits: torch.Tensor, bitmask: torch.Tensor) -> None:
    """logits: float [B, V]; bitmask: int32 [B, ceil(V / 32)], bit j of word w allows token 32*w + j.
    Sets disallowed logits to -inf in place."""
    b, v = logits.shape
    if logits.stride(1) != 1 or bitmask.stride(1) != 1:
        raise ValueError("logits and bitmask need unit stride on their last dimension")
    if bitmask.shape[0] != b or bitmask.shape[1] * 32 < v:
        raise ValueError(f"bitmask {tuple(bitmask.shape)} does not cover logits {tuple(logits.shape)}")
    _bitmask_kernel[(b, triton.cdiv(v, BLOCK_V))](logits, bitmask, logits.stride(0), bitmask.stride(0),
                                                  v, BLOCK=BLOCK_V)
