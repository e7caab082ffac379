"""Random paged batches for the kernel tests and benchmarks (no requests, only the layout tensors).

A layout is what the runtime would hand attention: a req_to_slot table whose rows list each request's
KV slots, filled page by page from a shuffled pool (so slots are contiguous within a page only), and
the new tokens' slots at positions prefix_len : seq_len of each row.
"""
from __future__ import annotations

import torch

from .meta import AttnMeta


def random_meta(prefix_lens: list[int], extend_lens: list[int], page_size: int = 1, *,
                spare_rows: int = 2, spare_pages: int = 3, seed: int = 0) -> tuple[AttnMeta, int]:
    """Builds the AttnMeta of one forward and returns it with the pool size S it needs.

    Request b gets ceil(seq_len / page_size) pages drawn at random from a pool with a few spare pages,
    and a random row of a req_to_slot table with a few spare rows (so req_rows is not the identity).
    """
    if len(prefix_lens) != len(extend_lens) or not prefix_lens:
        raise ValueError("prefix_lens and extend_lens must be non-empty lists of the same length")
    gen = torch.Generator().manual_seed(seed)
    seq_lens = [p + e for p, e in zip(prefix_lens, extend_lens)]
    pages_per_req = [-(-n // page_size) for n in seq_lens]
    num_pages = sum(pages_per_req) + spare_pages
    page_order = torch.randperm(num_pages, generator=gen)  # which pool page each request page uses
    num_rows = len(seq_lens) + spare_rows
    max_context = max(pages_per_req) * page_size + page_size
    req_to_slot = torch.zeros(num_rows, max_context, dtype=torch.int32)  # int32 [R, max_context]
    req_rows = torch.randperm(num_rows, generator=gen)[: len(seq_lens)]  # int64 [B]
    offset = torch.arange(page_size)
    used = 0
    for row, n_pages in zip(req_rows.tolist(), pages_per_req):
        pages = page_order[used: used + n_pages]
        used += n_pages
        req_to_slot[row, : n_pages * page_size] = (pages[:, None] * page_size + offset).flatten()
    out_slots = torch.cat([req_to_slot[r, p: p + e] for r, p, e in
                           zip(req_rows.tolist(), prefix_lens, extend_lens)]).long()  # int64 [T]
    meta = AttnMeta(req_to_slot=req_to_slot, req_rows=req_rows,
                    prefix_lens=torch.tensor(prefix_lens, dtype=torch.int64),
                    extend_lens=torch.tensor(extend_lens, dtype=torch.int64),
                    out_slots=out_slots, max_extend=max(extend_lens), max_seq=max(seq_lens),
                    is_decode=all(e == 1 for e in extend_lens))
    return meta, num_pages * page_size


def meta_to(meta: AttnMeta, device: torch.device | str) -> AttnMeta:
    """The same layout with every tensor on `device` (derived caches are rebuilt there)."""
    return AttnMeta(req_to_slot=meta.req_to_slot.to(device), req_rows=meta.req_rows.to(device),
                    prefix_lens=meta.prefix_lens.to(device), extend_lens=meta.extend_lens.to(device),
                    out_slots=meta.out_slots.to(device), max_extend=meta.max_extend,
                    max_seq=meta.max_seq, is_decode=meta.is_decode)


def random_pools(num_slots: int, num_kv_heads: int, head_dim: int, dtype: torch.dtype,
                 seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """k_pool, v_pool: [S, KVH, D] with N(0, 1) entries."""
    gen = torch.Generator().manual_seed(seed)
    shape = (num_slots, num_kv_heads, head_dim)
    return (torch.randn(shape, generator=gen).to(dtype), torch.randn(shape, generator=gen).to(dtype))
