"""KVManager: the one owner of KV slots: page allocator + slot table + prefix cache.

Every slot is, at any time, exactly one of: free; held by the prefix cache (evictable or locked);
private to a running request (in its slot-table row, past its `cached_len`).

Long-rope models (Phi-3 128k, Phi-3.5 / Phi-4-mini) rotate a sequence longer than
`rope_switch_len` (N) with other frequencies, everywhere in it, as transformers does: its generate
recomputes the whole cache when a sequence crosses N (Phi3ForCausalLM.prepare_inputs_for_generation).
So a request is in one mode for as long as it holds KV: long iff it had more than N tokens when
admitted (`req.rope_long`); a short one that decodes past N is retracted by the scheduler and comes
back long (see `must_recompute`). The prefix cache holds short-mode KV only (at most N tokens deep):
long requests neither match nor insert.
"""
from __future__ import annotations

import torch

from radixgen.radix import PrefixCache

from .memory_pool import PageAllocator, ReqToSlot
from .request import Req


class KVManager:
    def __init__(self, allocator: PageAllocator, slots: ReqToSlot, cache: PrefixCache,
                 rope_switch_len: int = 0):
        self.allocator, self.slots, self.cache = allocator, slots, cache
        self.page_size = allocator.page_size
        self.rope_switch_len = rope_switch_len  # N of a long-rope model; 0 = one rotary mode

    def must_recompute(self, req: Req) -> bool:
        """A short-mode request that now has more than N tokens: its KV must be computed again in
        long mode (retract it)."""
        return 0 < self.rope_switch_len < req.seq_len and req.row is not None and not req.rope_long

    def available(self) -> int:
        """Slots a new allocation could get: free plus evictable."""
        return self.allocator.num_free_slots + self.cache.evictable_size()

    def pages_needed(self, req: Req, n: int) -> int:
        """Slots (whole pages) that extending `req` by n tokens takes from the pool."""
        ps = self.page_size
        return (-(-(req.kv_len + n) // ps) - -(-req.kv_len // ps)) * ps

    def admit(self, req: Req) -> bool:
        """Give `req` a slot-table row and lock its longest cached prefix; False if no row is free."""
        row = self.slots.alloc_row()
        if row is None:
            return False
        req.row = row
        req.rope_long = 0 < self.rope_switch_len < req.seq_len
        match = self.cache.match_prefix([] if req.rope_long else req.token_ids(0, req.max_cached_len))
        self.cache.lock(match.node)
        n = match.length
        self.slots.table[row, :n] = match.slots.to(torch.int32)
        req.node, req.cached_len, req.kv_len = match.node, n, n
        if req.num_retractions == 0:
            req.hit_len = n
        return True

    def extend(self, req: Req, n: int) -> torch.Tensor | None:
        """Slots for tokens [kv_len, kv_len + n) of `req`, written into its row (kv_len advances);
        evicts from the prefix cache if needed. None, with nothing changed, if the pool is too full."""
        ps, start, end = self.page_size, req.kv_len, req.kv_len + n
        num_pages = self.pages_needed(req, n) // ps
        pages = self._alloc_pages(num_pages)
        if pages is None:
            return None
        # Token i lives at offset i % ps of its page. Tokens before the first new page boundary
        # fill the request's current, partly used page; the rest go to the new pages in order.
        boundary = min(-(-start // ps) * ps, end)
        table = self.slots.table[req.row]
        head = torch.arange(start, boundary)
        if head.numel():
            head = int(table[start - 1]) - (start - 1) % ps + head % ps
        tail = (pages.repeat_interleave(ps) * ps + torch.arange(ps).repeat(len(pages)))[: end - boundary]
        slots = torch.cat([head.long(), tail])
        table[start:end] = slots.to(torch.int32)
        req.kv_len = end
        return slots

    def extend_decode(self, reqs: list[Req]) -> torch.Tensor | None:
        """One more slot for each of `reqs` (a decode step), vectorised: int64 [B] slots, or None
        with nothing changed if the pool cannot hold them. A request whose last page is full gets a
        new page; the others take the next slot of their page."""
        ps = self.page_size
        kv = torch.tensor([r.kv_len for r in reqs], dtype=torch.int64)
        rows = torch.tensor([r.row for r in reqs], dtype=torch.int64)
        table = self.slots.table
        fresh = kv % ps == 0                                                # [B] needs a new page
        pages = self._alloc_pages(int(fresh.sum()))
        if pages is None:
            return None
        slots = table[rows, (kv - 1).clamp(min=0)].long() + 1               # next slot of the last page
        slots[fresh] = pages * ps
        table[rows, kv] = slots.to(torch.int32)
        for r in reqs:
            r.kv_len += 1
        return slots

    def _alloc_pages(self, n: int) -> torch.Tensor | None:
        pages = self.allocator.alloc_pages(n)
        if pages is None:
            self.cache.evict(n * self.page_size - self.allocator.num_free_slots)
            pages = self.allocator.alloc_pages(n)
        return pages

    def cache_prefix(self, req: Req) -> None:
        """Share a running request's computed tokens: insert them into the cache and switch its row
        to the cache's slots (freeing its duplicates), so concurrent requests reuse them."""
        if not self.cache.shares or req.rope_long:
            return
        ids, row = req.token_ids(0, req.kv_len), self.slots.table[req.row]
        res = self.cache.insert(ids, row[: req.kv_len].long())
        self.allocator.free(row[req.cached_len: res.prefix_len].long())
        match = self.cache.match_prefix(ids[: res.aligned_len])
        assert match.length == res.aligned_len, (match.length, res.aligned_len)
        row[: match.length] = match.slots.to(torch.int32)
        self.cache.lock(match.node)
        self.cache.unlock(req.node)
        req.node, req.cached_len = match.node, match.length

    def release(self, req: Req) -> None:
        """Give back everything `req` holds: its computed tokens go to the cache (which frees them
        at once when not sharing), duplicates and the unaligned tail to the allocator."""
        if req.row is None:
            return
        row = self.slots.table[req.row]
        slots = row[: req.kv_len].long()
        if req.rope_long:  # long-mode KV is never cached (cached_len is 0)
            self.allocator.free(slots)
        elif req.kv_len > req.cached_len:
            res = self.cache.insert(req.token_ids(0, req.kv_len), slots)
            self.allocator.free(slots[req.cached_len: res.prefix_len])
            self.allocator.free(slots[res.aligned_len:])  # the unaligned tail: a partial page
        self.cache.unlock(req.node)
        self.slots.free_row(req.row)
        req.row, req.node, req.kv_len, req.cached_len = None, None, 0, 0

    def check(self) -> None:
        """free + evictable + locked == capacity; valid when no request holds private slots."""
        self.cache.check(self.allocator.num_free_slots, self.allocator.capacity)
