"""RadixCache against a naive reference model, driven by hypothesis' stateful testing.

The reference keeps one entry per cached page (a token when page_size is 1), keyed by the whole
prefix that ends with that page: `ref[tuple(ids[:end])] = [page slots, last_access]`. The cached
set is prefix-closed, so the longest cached prefix of a key is the longest `key[:end]` in `ref`;
a "leaf" is a prefix nothing extends; a held lock on a match of length L pins every page prefix
up to L. Times follow the same rule as the cache: one tick per match/insert, touching every page
of the matched / inserted prefix.

A real little allocator (a set of free slots) hands out fresh slots for each insert; the test frees
the duplicates and the unaligned tail (the ownership rule in radix/base.py); the cache frees only
through `free_slots`, where we check: only during evict, no double free, no locked slot, the freed
slots are one whole unlocked leaf run, and it is the least recently used of the unlocked leaves.
"""
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from radixgen.radix import RadixCache

POOL = 48
keys = st.lists(st.integers(0, 2), max_size=14)     # tiny alphabet: lots of shared prefixes


class CacheMachine(RuleBasedStateMachine):
    page_size = 1

    def __init__(self):
        super().__init__()
        self.free = set(range(POOL))
        self.cache = RadixCache(self.on_free, page_size=self.page_size)
        self.ref: dict[tuple, list] = {}  # page-aligned prefix -> [page slots, last_access]
        self.clock = 0
        self.locks: list[tuple[tuple, list[int], object]] = []   # (prefix, slots, node)
        self.evicting = False

    # ---- the allocator and the cache's free callback ------------------------------------------

    def alloc(self, n: int) -> list[int]:
        if len(self.free) < n:
            self.evict_checked(n - len(self.free))
        n = min(n, len(self.free))
        out = sorted(self.free)[:n]
        self.free.difference_update(out)
        return out

    def give_back(self, slots: list[int]) -> None:
        assert self.free.isdisjoint(slots), "double free"
        self.free.update(slots)

    def on_free(self, t: torch.Tensor) -> None:
        assert self.evicting, "the cache freed slots outside evict"
        freed = t.tolist()
        assert self.free.isdisjoint(freed), f"double free of {set(freed) & self.free}"
        assert self.locked_slots().isdisjoint(freed), "a locked slot was freed"
        ps = self.page_size
        by_slot = {slot: prefix for prefix, (page, _) in self.ref.items() for slot in page}
        run = sorted({by_slot[s] for s in freed}, key=len)   # KeyError: slot not owned by the cache
        assert all(a == b[:-ps] for a, b in zip(run, run[1:])), "freed slots are not one run"
        assert [s for p in run for s in self.ref[p][0]] == freed, "slots freed out of token order"
        leaves = self.unlocked_leaves()
        assert run[-1] in leaves, "evicted a node that is not an unlocked leaf"
        t_evicted = self.ref[run[-1]][1]
        assert all(self.ref[p][1] >= t_evicted for p in leaves), "not the least recently used leaf"
        for p in run:
            del self.ref[p]
        self.freed_now.append(len(freed))
        self.give_back(freed)

    def evict_checked(self, n: int) -> int:
        self.evicting, self.freed_now = True, []
        before = self.cache.evictable_size()
        try:
            got = self.cache.evict(n)
        finally:
            self.evicting = False
        assert got == sum(self.freed_now)
        assert got >= n or self.cache.evictable_size() == 0
        assert sum(self.freed_now[:-1]) < n or not self.freed_now, "evicted more nodes than needed"
        assert self.cache.evictable_size() == before - got
        return got

    # ---- the reference model ------------------------------------------------------------------

    def ref_match(self, ids: list[int]) -> int:
        """Longest cached prefix of ids, in whole pages (a key may stop inside a cached page)."""
        n, ps = 0, self.page_size
        while n + ps <= len(ids) and tuple(ids[:n + ps]) in self.ref:
            n += ps
        return n

    def touch(self, ids: list[int], n: int) -> None:
        self.clock += 1
        for end in range(self.page_size, n + 1, self.page_size):
            self.ref[tuple(ids[:end])][1] = self.clock

    def locked_prefixes(self) -> set[tuple]:
        ps = self.page_size
        return {prefix[:end] for prefix, _, _ in self.locks
                for end in range(ps, len(prefix) + 1, ps)}

    def locked_slots(self) -> set[int]:
        return {s for _, slots, _ in self.locks for s in slots}

    def unlocked_leaves(self) -> set[tuple]:
        parents = {p[:-self.page_size] for p in self.ref}
        return {p for p in self.ref if p not in parents} - self.locked_prefixes()

    # ---- rules ---------------------------------------------------------------------------------

    def do_match(self, ids: list[int]):
        r = self.cache.match_prefix(ids)
        n = self.ref_match(ids)
        assert r.length == n, f"matched {r.length}, reference {n}"
        ps = self.page_size
        pages = [self.ref[tuple(ids[:end])][0] for end in range(ps, n + 1, ps)]
        assert r.slots.tolist() == [s for page in pages for s in page]
        self.touch(ids, n)
        return r

    def do_insert(self, ids: list[int], slots: list[int], own_from: int = 0) -> int:
        """Insert; the caller owns slots[own_from:] and frees those the cache did not take."""
        r = self.cache.insert(ids, torch.tensor(slots, dtype=torch.int64))
        assert r.aligned_len == len(ids) // self.page_size * self.page_size
        assert r.prefix_len == self.ref_match(ids[:r.aligned_len])
        for end in range(r.prefix_len + self.page_size, r.aligned_len + 1, self.page_size):
            self.ref[tuple(ids[:end])] = [slots[end - self.page_size:end], 0]
        self.touch(ids, r.aligned_len)
        self.give_back(slots[own_from:r.prefix_len] + slots[max(own_from, r.aligned_len):])
        return r.prefix_len

    @rule(ids=keys)
    def insert_fresh(self, ids):
        slots = self.alloc(len(ids))
        self.do_insert(ids[:len(slots)], slots)

    @rule(ids=keys)
    def match(self, ids):
        self.do_match(ids)

    @rule(ids=keys)
    def match_and_lock(self, ids):
        r = self.do_match(ids)
        self.cache.lock(r.node)
        self.locks.append((tuple(ids[:r.length]), r.slots.tolist(), r.node))

    @precondition(lambda self: self.locks)
    @rule(i=st.integers(0, 99))
    def unlock(self, i):
        _, _, node = self.locks.pop(i % len(self.locks))
        self.cache.unlock(node)

    @precondition(lambda self: self.locks)
    @rule(i=st.integers(0, 99), extra=keys)
    def finish_request(self, i, extra):
        """A request that matched and locked a prefix extends it, inserts it all, unlocks."""
        prefix, cached, node = self.locks.pop(i % len(self.locks))
        self.locks.append((prefix, cached, node))    # still locked while it allocates (may evict)
        fresh = self.alloc(len(extra))
        ids = list(prefix) + extra[:len(fresh)]
        assert self.do_insert(ids, cached + fresh, own_from=len(cached)) >= len(prefix)
        self.locks.pop()
        self.cache.unlock(node)

    @rule(n=st.integers(0, POOL))
    def evict(self, n):
        self.evict_checked(n)

    @invariant()
    def accounting(self):
        self.cache.check(len(self.free), POOL)
        self.cache.check_tree()
        cached_slots = {slot for page, _ in self.ref.values() for slot in page}
        assert len(cached_slots) == len(self.ref) * self.page_size == self.cache.total_size()
        assert cached_slots.isdisjoint(self.free) and len(cached_slots) + len(self.free) == POOL
        assert self.cache.locked_size() == len(self.locked_prefixes()) * self.page_size

    def teardown(self):
        for _, _, node in self.locks:
            self.cache.unlock(node)
        assert self.cache.locked_size() == 0


class PagedCacheMachine(CacheMachine):
    page_size = 4


SETTINGS = settings(max_examples=150, stateful_step_count=30, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
TestRadixCache = CacheMachine.TestCase
TestRadixCache.settings = SETTINGS
TestPagedRadixCache = PagedCacheMachine.TestCase
TestPagedRadixCache.settings = SETTINGS
