"""Unit tests of RadixCache: one behaviour each, `check_tree()` after every scenario."""
import pytest
import torch

from radixgen.radix import InsertResult, PrefixCache, RadixCache


def slots(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int64)


class Freed:
    """free_slots callback that records each freed tensor as a list."""

    def __init__(self):
        self.calls: list[list[int]] = []

    def __call__(self, t: torch.Tensor) -> None:
        self.calls.append(t.tolist())

    @property
    def all(self) -> list[int]:
        return [s for call in self.calls for s in call]


@pytest.fixture
def freed() -> Freed:
    return Freed()


@pytest.fixture
def cache(freed: Freed):
    c = RadixCache(freed)
    yield c
    c.check_tree()


def test_is_a_prefix_cache(cache):
    assert isinstance(cache, PrefixCache) and cache.shares and cache.page_size == 1


def test_empty_match_returns_root(cache):
    r = cache.match_prefix([1, 2, 3])
    assert r.length == 0 and r.slots.dtype == torch.int64 and r.node is cache.root
    assert cache.match_prefix([]).node is cache.root
    assert cache.total_size() == 0


def test_exact_match(cache):
    assert cache.insert([1, 2, 3], slots(10, 11, 12)) == InsertResult(0, 3)
    r = cache.match_prefix([1, 2, 3])
    assert r.slots.tolist() == [10, 11, 12] and r.node.key == [1, 2, 3]
    assert cache.match_prefix([1, 2, 3, 4, 5]).slots.tolist() == [10, 11, 12]


def test_partial_match_splits_node(cache):
    cache.insert([1, 2, 3, 4, 5], slots(10, 11, 12, 13, 14))
    r = cache.match_prefix([1, 2, 3, 9])
    assert r.slots.tolist() == [10, 11, 12]
    assert r.node.key == [1, 2, 3] and r.node.parent is cache.root
    (child,) = r.node.children.values()
    assert child.key == [4, 5] and child.value.tolist() == [13, 14]
    assert cache.total_size() == 5


def test_match_shorter_than_node_splits(cache):
    cache.insert([1, 2, 3, 4], slots(10, 11, 12, 13))
    r = cache.match_prefix([1, 2])
    assert r.slots.tolist() == [10, 11] and r.node.key == [1, 2]


def test_insert_returns_prefix_len(cache):
    assert cache.insert([1, 2, 3], slots(0, 1, 2)) == InsertResult(0, 3)
    assert cache.insert([1, 2, 3, 4, 5], slots(7, 8, 9, 3, 4)) == InsertResult(3, 5)
    assert cache.insert([1, 2, 3], slots(5, 6, 7)) == InsertResult(3, 3)
    assert cache.insert([1, 2, 9], slots(5, 6, 8)) == InsertResult(2, 3)
    # the cache kept its own slots for the shared prefix, took the new ones after it
    assert cache.match_prefix([1, 2, 3, 4, 5]).slots.tolist() == [0, 1, 2, 3, 4]
    assert cache.match_prefix([1, 2, 9]).slots.tolist() == [0, 1, 8]
    assert cache.total_size() == 6


def test_shared_prefixes_across_inserts(cache):
    cache.insert([1, 2, 3, 4], slots(0, 1, 2, 3))
    cache.insert([1, 2, 5, 6], slots(9, 9, 4, 5))
    cache.insert([1, 7], slots(9, 6))
    cache.insert([8], slots(7))
    assert cache.match_prefix([1, 2, 3, 4]).slots.tolist() == [0, 1, 2, 3]
    assert cache.match_prefix([1, 2, 5, 6]).slots.tolist() == [0, 1, 4, 5]
    assert cache.match_prefix([1, 7, 7]).slots.tolist() == [0, 6]
    assert cache.match_prefix([8, 1]).slots.tolist() == [7]
    assert cache.match_prefix([2]).length == 0
    assert cache.total_size() == cache.evictable_size() == 8


def test_insert_copies_slots(cache):
    s = slots(0, 1, 2)
    cache.insert([1, 2, 3], s)
    s.fill_(-1)
    returned = cache.match_prefix([1, 2, 3]).slots
    returned.fill_(-2)
    assert cache.match_prefix([1, 2, 3]).slots.tolist() == [0, 1, 2]


def test_insert_needs_one_slot_per_token(cache):
    with pytest.raises(ValueError, match="one slot per token"):
        cache.insert([1, 2, 3], slots(0, 1))


def test_lock_moves_sizes_and_prevents_eviction(cache, freed):
    cache.insert([1, 2, 3, 4], slots(0, 1, 2, 3))
    cache.insert([1, 2, 5], slots(9, 9, 4))
    r = cache.match_prefix([1, 2, 3])         # splits [3, 4] into [3] + [4]
    cache.lock(r.node)
    assert (cache.locked_size(), cache.evictable_size()) == (3, 2)
    cache.lock(r.node)
    assert cache.evict(100) == 2 and sorted(freed.all) == [3, 4]
    assert cache.match_prefix([1, 2, 3, 4]).slots.tolist() == [0, 1, 2]
    cache.unlock(r.node)
    assert (cache.locked_size(), cache.evictable_size()) == (3, 0)
    cache.unlock(r.node)
    assert (cache.locked_size(), cache.evictable_size()) == (0, 3)
    assert cache.evict(100) == 3 and sorted(freed.all) == [0, 1, 2, 3, 4]
    assert cache.total_size() == 0


def test_lock_root_is_a_no_op(cache):
    r = cache.match_prefix([1])
    cache.lock(r.node)
    cache.unlock(r.node)
    assert cache.locked_size() == 0


def test_unlock_underflow_raises(cache):
    cache.insert([1, 2], slots(0, 1))
    r = cache.match_prefix([1, 2])
    cache.lock(r.node)
    cache.unlock(r.node)
    with pytest.raises(AssertionError):
        cache.unlock(r.node)
    assert (cache.locked_size(), cache.evictable_size()) == (0, 2)


def test_lock_of_evicted_node_raises(cache):
    cache.insert([1, 2], slots(0, 1))
    r = cache.match_prefix([1, 2])
    cache.evict(2)
    with pytest.raises(ValueError, match="evicted"):
        cache.lock(r.node)


def test_evict_lru_order(cache, freed):
    cache.insert([1], slots(0))
    cache.insert([2], slots(1))
    cache.insert([3], slots(2))
    cache.match_prefix([1])                   # [1] is now the most recent
    assert cache.evict(1) == 1 and freed.calls == [[1]]
    assert cache.evict(1) == 1 and freed.calls == [[1], [2]]
    assert cache.evict(1) == 1 and freed.calls == [[1], [2], [0]]
    assert cache.evict(1) == 0


def test_evict_stops_once_enough_freed(cache, freed):
    cache.insert([1, 1, 1], slots(0, 1, 2))
    cache.insert([2, 2, 2], slots(3, 4, 5))
    cache.insert([3, 3, 3], slots(6, 7, 8))
    assert cache.evict(4) == 6 and freed.calls == [[0, 1, 2], [3, 4, 5]]
    assert cache.evictable_size() == 3
    assert cache.evict(0) == 0


def test_parent_becomes_evictable_after_children(cache, freed):
    cache.insert([1, 2, 3], slots(0, 1, 2))
    cache.insert([1, 2, 4], slots(0, 1, 3))   # tree: [1 2] -> {[3], [4]}
    cache.insert([9], slots(4))               # most recent leaf
    assert cache.evict(3) == 4                # [3], [4], then their parent [1 2] (older than [9])
    assert freed.calls == [[2], [3], [0, 1]]
    assert cache.match_prefix([9]).slots.tolist() == [4]


def test_locked_child_keeps_parent(cache, freed):
    cache.insert([1, 2, 3], slots(0, 1, 2))
    cache.insert([1, 2, 4], slots(0, 1, 3))
    r = cache.match_prefix([1, 2, 4])
    cache.lock(r.node)
    assert cache.evict(10) == 1 and freed.calls == [[2]]
    assert cache.locked_size() == 3 and cache.evictable_size() == 0


def test_page_size_alignment(freed):
    cache = RadixCache(freed, page_size=4)
    r = cache.insert(list(range(10)), torch.arange(10))
    assert r == InsertResult(0, 8)            # the caller frees slots 8 and 9
    assert cache.total_size() == 8
    assert cache.match_prefix(list(range(7))).length == 4
    assert cache.match_prefix(list(range(3))).length == 0
    m = cache.match_prefix([0, 1, 2, 3, 4, 5, 99, 7])   # mismatch inside page 2: match page 1
    assert m.slots.tolist() == [0, 1, 2, 3] and m.node.key == [0, 1, 2, 3]
    r = cache.insert([0, 1, 2, 3, 4, 5, 6, 8, 1], torch.arange(20, 29))
    assert r == InsertResult(4, 8)
    m = cache.match_prefix([0, 1, 2, 3, 4, 5, 6, 8])
    assert m.slots.tolist() == [0, 1, 2, 3, 24, 25, 26, 27]
    assert cache.total_size() == 12
    assert cache.evict(1) == 4 and freed.calls == [[4, 5, 6, 7]]
    cache.check_tree()


def test_page_size_must_be_positive(freed):
    with pytest.raises(ValueError, match="page_size"):
        RadixCache(freed, page_size=0)


def test_reset_forgets_without_freeing(cache, freed):
    cache.insert([1, 2, 3], slots(0, 1, 2))
    cache.lock(cache.match_prefix([1, 2]).node)
    cache.reset()
    assert cache.total_size() == cache.locked_size() == 0
    assert cache.match_prefix([1, 2, 3]).length == 0 and freed.calls == []


def test_check_uses_counters(cache):
    cache.insert([1, 2, 3], slots(0, 1, 2))
    cache.check(num_free=7, pool_size=10)
    with pytest.raises(AssertionError, match="KV accounting"):
        cache.check(num_free=8, pool_size=10)


def test_dump_shows_keys_and_locks(cache):
    cache.insert([11, 12, 13], slots(0, 1, 2))
    cache.insert([11, 12, 14] + list(range(20)), torch.arange(23))
    cache.lock(cache.match_prefix([11, 12, 13]).node)
    text = cache.dump()
    assert "[11 12] len=2 lock=1" in text
    assert "\n    [13] len=1 lock=1" in text
    assert "[14 0 1 2 3 4 5 6 ...] len=21 lock=0" in text


def test_accepts_tuple_and_tensor_ids(cache):
    cache.insert((1, 2, 3), slots(0, 1, 2))
    assert cache.match_prefix(torch.tensor([1, 2, 3])).length == 3
    assert cache.insert(torch.tensor([1, 2, 4]), slots(5, 6, 7)).prefix_len == 2
