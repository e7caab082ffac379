"""Random attention problems shared by the kernel tests: ragged lengths, GQA, pages, prefixes."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from radixgen.kernels.meta import AttnMeta
from radixgen.kernels.testing import meta_to, random_meta, random_pools


@dataclass(frozen=True)
class Case:
    prefix_lens: tuple[int, ...]
    extend_lens: tuple[int, ...]
    num_heads: int
    num_kv_heads: int
    head_dim: int
    page_size: int

    def __str__(self) -> str:
        return (f"pre{list(self.prefix_lens)}-ext{list(self.extend_lens)}-h{self.num_heads}"
                f"kv{self.num_kv_heads}-d{self.head_dim}-p{self.page_size}")


# decode: one new token per request (prefix = context so far); prefix 0 means a first token
DECODE_CASES = [
    Case((0,), (1,), 4, 4, 32, 1),
    Case((5, 0, 17, 40), (1, 1, 1, 1), 8, 2, 32, 1),
    Case((33, 1, 70), (1, 1, 1), 6, 1, 24, 16),          # odd group, head dim not a power of 2
    Case((300, 2, 9, 130, 64), (1, 1, 1, 1, 1), 4, 2, 64, 16),
    Case((700,), (1,), 2, 1, 16, 1),                     # long: several splits
    Case((0, 520), (1, 1), 4, 2, 32, 16),                # splits, some empty for the short one
]
EXTEND_CASES = [
    Case((0,), (7,), 4, 4, 32, 1),
    Case((0, 0, 0), (30, 1, 45), 8, 2, 32, 16),          # prefill, ragged
    Case((5, 0, 17, 40), (3, 33, 1, 16), 8, 2, 32, 1),   # prefix hits
    Case((64, 31), (40, 70), 6, 1, 24, 16),
    Case((100, 3), (2, 5), 4, 2, 64, 16),                # short extends (the CPU kernel's path)
]


def make(case: Case, dtype: torch.dtype, device: torch.device | str = "cpu", seed: int = 0
         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, AttnMeta]:
    """q [T, H, D], k_pool, v_pool [S, KVH, D] and the layout, all on `device`."""
    meta, num_slots = random_meta(list(case.prefix_lens), list(case.extend_lens), case.page_size, seed=seed)
    k_pool, v_pool = random_pools(num_slots, case.num_kv_heads, case.head_dim, dtype, seed=seed + 1)
    gen = torch.Generator().manual_seed(seed + 2)
    q = torch.randn(sum(case.extend_lens), case.num_heads, case.head_dim, generator=gen).to(dtype)
    return q.to(device), k_pool.to(device), v_pool.to(device), meta_to(meta, device)


def tolerance(dtype: torch.dtype) -> dict[str, float]:
    """fp32: summation-order noise; bf16: a couple of bf16 ulps of O(1) outputs."""
    return {"atol": 1e-5, "rtol": 1e-4} if dtype == torch.float32 else {"atol": 2e-2, "rtol": 2e-2}


def random_bitmask(batch: int, vocab: int, seed: int = 0) -> torch.Tensor:
    """int32 [B, ceil(V/32)] random words, one row all-allowed and one all-banned."""
    gen = torch.Generator().manual_seed(seed)
    words = torch.randint(-2**31, 2**31 - 1, (batch, -(-vocab // 32)), generator=gen, dtype=torch.int64)
    words[0] = -1
    if batch > 1:
        words[1] = 0
    return words.to(torch.int32)
