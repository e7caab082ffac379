"""The prefix-cache contract the engine programs against.

A prefix cache maps token-id prefixes to the KV-pool slots that hold their keys
and values. The engine owns the slot allocator; a cache frees slots only through
the `free_slots` callback it was built with (on eviction), never by itself.

Ownership, the one rule to keep in mind: after `insert(ids, slots)` the cache
owns `slots[r.prefix_len:r.aligned_len]`; the caller still owns (and must free)
its duplicates `slots[:r.prefix_len]` that it did not get from the cache, and
the unaligned tail `slots[r.aligned_len:]`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, NamedTuple, Sequence

import torch

FreeFn = Callable[[torch.Tensor], None]


class MatchResult(NamedTuple):
    """Longest cached prefix of a key.

    slots: int64 [length] KV slots of the matched tokens; valid only while `node` is locked.
    node:  handle to pass to `lock`/`unlock` (the root when nothing matched).
    """

    slots: torch.Tensor
    node: Any

    @property
    def length(self) -> int:
        return int(self.slots.numel())


class InsertResult(NamedTuple):
    """prefix_len: leading tokens that were already cached (the caller's slots there are duplicates).
    aligned_len: tokens actually inserted (the key truncated to whole pages)."""

    prefix_len: int
    aligned_len: int


class PrefixCache(ABC):
    """match / insert / lock / evict over token-id keys; stores ints and index tensors only."""

    page_size: int = 1

    @abstractmethod
    def match_prefix(self, ids: Sequence[int]) -> MatchResult:
        """Longest cached page-aligned prefix of `ids`. Touches the path (LRU). Changes nothing else,
        except that a node may be split where the match ends inside it."""

    @abstractmethod
    def insert(self, ids: Sequence[int], slots: torch.Tensor) -> InsertResult:
        """Add `ids[:aligned_len]` with their `slots`; see the ownership rule in the module docstring."""

    @abstractmethod
    def lock(self, node: Any) -> None:
        """Pin `node` and its ancestors: they cannot be evicted until `unlock`."""

    @abstractmethod
    def unlock(self, node: Any) -> None:
        """Undo one `lock(node)`."""

    @abstractmethod
    def evict(self, num_tokens: int) -> int:
        """Free at least `num_tokens` slots (fewer if not enough are evictable), least recently used
        unlocked leaves first; returns how many were freed through `free_slots`."""

    @abstractmethod
    def evictable_size(self) -> int:
        """Slots held by the cache that no lock pins."""

    @abstractmethod
    def locked_size(self) -> int:
        """Slots held by the cache that some lock pins."""

    @abstractmethod
    def reset(self) -> None:
        """Forget everything (the caller has made sure nothing is locked); frees nothing."""

    def check(self, num_free: int, pool_size: int) -> None:
        """Raise AssertionError unless free + evictable + locked == pool size (call when no request
        holds private slots, e.g. after every request finished)."""
        total = num_free + self.evictable_size() + self.locked_size()
        if total != pool_size:
            raise AssertionError(
                f"KV accounting broken: free {num_free} + evictable {self.evictable_size()} "
                f"+ locked {self.locked_size()} = {total} != pool size {pool_size}")

    @property
    def shares(self) -> bool:
        """Whether inserted prefixes can be matched later (False for the no-sharing cache)."""
        return True


class NoPrefixCache(PrefixCache):
    """No sharing: nothing ever matches; inserted slots are freed at once."""

    def __init__(self, free_slots: FreeFn, page_size: int = 1):
        self.free_slots, self.page_size = free_slots, page_size

    def match_prefix(self, ids: Sequence[int]) -> MatchResult:
        return MatchResult(torch.empty(0, dtype=torch.int64), None)

    def insert(self, ids: Sequence[int], slots: torch.Tensor) -> InsertResult:
        aligned = len(ids) // self.page_size * self.page_size
        if aligned:
            self.free_slots(slots[:aligned])
        return InsertResult(0, aligned)

    def lock(self, node: Any) -> None:
        pass

    def unlock(self, node: Any) -> None:
        pass

    def evict(self, num_tokens: int) -> int:
        return 0

    def evictable_size(self) -> int:
        return 0

    def locked_size(self) -> int:
        return 0

    def reset(self) -> None:
        pass

    @property
    def shares(self) -> bool:
        return False
