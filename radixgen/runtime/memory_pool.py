"""KV memory: the pool of K/V slots, the page allocator, and the per-request slot table.

Slot 0 (page 0) is reserved as padding: stale or padded entries of the slot table point there, so
gathers stay in bounds and read finite values.
"""
from __future__ import annotations

import math
import mmap

import torch


class KVPool:
    """K and V for every layer, one slot per token: k, v: [num_layers, num_slots, kv_heads, head_dim]."""

    def __init__(self, num_layers: int, num_slots: int, kv_heads: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device):
        shape = (num_layers, num_slots, kv_heads, head_dim)
        # zeros, not empty: masked-out keys are read too and must not be NaN (0 * NaN = NaN).
        self.k = lazy_zeros(shape, dtype, device)
        self.v = lazy_zeros(shape, dtype, device)

    @staticmethod
    def bytes_per_token(num_layers: int, kv_heads: int, head_dim: int, dtype: torch.dtype) -> int:
        return 2 * num_layers * kv_heads * head_dim * torch.empty((), dtype=dtype).element_size()


def lazy_zeros(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A zero tensor whose memory the OS zeroes on first touch (on a CPU), in 2 MB huge pages.

    torch.zeros writes every byte up front: for a pool of a quarter of this machine's memory that
    took ~10 s of start-up. An anonymous mapping is zero already and costs nothing until touched;
    with 4 KB pages, though, each first write to a slot paid a page fault (~40 us here, 7 us a
    token a layer in decode), hence MADV_HUGEPAGE: 512x fewer faults (rotary + KV write of 256
    fresh tokens: 1976 us with 4 KB pages, 176 us with huge pages, 79 us on touched memory).
    """
    if device.type != "cpu":
        return torch.zeros(shape, dtype=dtype, device=device)
    nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
    region = mmap.mmap(-1, max(nbytes, 1))  # anonymous, private, zero-filled
    if hasattr(mmap, "MADV_HUGEPAGE"):
        region.madvise(mmap.MADV_HUGEPAGE)
    # the tensor's storage keeps `region` alive
    return torch.frombuffer(region, dtype=torch.uint8, count=nbytes).view(dtype).view(shape)


class PageAllocator:
    """Hands out pages of `page_size` consecutive slots; frees by slot tensors (page-aligned groups)."""

    def __init__(self, num_pages: int, page_size: int):
        self.page_size = page_size
        self.num_pages = num_pages
        self._free: list[int] = list(range(num_pages - 1, 0, -1))  # page 0 reserved; pop() from the end

    @property
    def num_free_slots(self) -> int:
        return len(self._free) * self.page_size

    @property
    def capacity(self) -> int:
        """Allocatable slots (the reserved page excluded)."""
        return (self.num_pages - 1) * self.page_size

    def alloc_pages(self, n: int) -> torch.Tensor | None:
        """int64 [n] page ids, or None (and nothing taken) if fewer than n are free."""
        if n > len(self._free):
            return None
        pages = self._free[-n:] if n else []
        del self._free[len(self._free) - n:]
        return torch.tensor(pages, dtype=torch.int64)

    def free(self, slots: torch.Tensor) -> None:
        """Free the pages of `slots`, which must start at a page boundary and cover whole pages
        (a request's last, partly used page included)."""
        if slots.numel() == 0:
            return
        starts = slots[:: self.page_size]
        assert bool((starts % self.page_size == 0).all()), "freed slots are not page-aligned"
        self._free.extend((starts // self.page_size).tolist())


class ReqToSlot:
    """Slot table: row r holds the pool slot of every token of the request on that row.

    table: int32 [max_reqs, max_context]; rows are recycled through a free list."""

    def __init__(self, max_reqs: int, max_context: int, device: torch.device):
        self.table = torch.zeros(max_reqs, max_context, dtype=torch.int32, device=device)
        self._free_rows = list(range(max_reqs - 1, -1, -1))

    @property
    def num_free_rows(self) -> int:
        return len(self._free_rows)

    def alloc_row(self) -> int | None:
        return self._free_rows.pop() if self._free_rows else None

    def free_row(self, row: int) -> None:
        self._free_rows.append(row)
