"""Token bitmasks: int32 [B, ceil(V / 32)], bit j of word w allows token 32 * w + j.

The same layout as outlines-core, xgrammar and llguidance, so a fused kernel can replace
`apply_bitmask` on a GPU without touching the grammar side.
"""
from __future__ import annotations

import numpy as np
import torch


def bitmask_width(vocab_size: int) -> int:
    return (vocab_size + 31) // 32


def make_bitmask(batch: int, vocab_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """int32 [batch, ceil(vocab_size / 32)] of all ones: every token allowed."""
    return torch.full((batch, bitmask_width(vocab_size)), -1, dtype=torch.int32, device=device)


def apply_bitmask(logits: torch.Tensor, bitmask: torch.Tensor) -> None:
    """logits: float [B, V]; bitmask: int32 [B, W]. Sets disallowed logits to -inf in place.

    Tokens past 32 * W (a model vocabulary padded beyond the tokenizer's) count as disallowed.
    """
    v = logits.shape[-1]
    bits = torch.arange(32, dtype=torch.int32, device=bitmask.device)
    allowed = ((bitmask.unsqueeze(-1) >> bits) & 1).bool().flatten(-2)  # [B, 32 * W]
    if allowed.shape[-1] < v:
        allowed = torch.nn.functional.pad(allowed, (0, v - allowed.shape[-1]), value=False)
    logits.masked_fill_(~allowed[..., :v], float("-inf"))


def pack_ids(token_ids: np.ndarray, vocab_size: int) -> np.ndarray:
    """int [n] token ids (< vocab_size) -> int32 [ceil(vocab_size / 32)] packed row."""
    bits = np.zeros(32 * bitmask_width(vocab_size), dtype=bool)
    bits[np.asarray(token_ids, dtype=np.int64)] = True
    # little-endian bytes of each word, then native words: bit j of word w is token 32 * w + j
    return np.packbits(bits, bitorder="little").view("<u4").astype(np.uint32).view(np.int32)


def row_has(row: np.ndarray, token_id: int) -> bool:
    """Whether packed row (int32 [W]) allows token_id."""
    return bool((int(row[token_id >> 5]) >> (token_id & 31)) & 1)


def row_ids(row: np.ndarray) -> np.ndarray:
    """The allowed token ids of a packed row, ascending (for tests and debugging)."""
    bits = np.unpackbits(row.view(np.uint8), bitorder="little")
    return np.flatnonzero(bits)
