"""Radix-tree prefix cache: token-id prefixes -> KV slots, shared by every request.

Each node holds a run of tokens (`key`, whole pages when page_size > 1) and their KV slots
(`value`, int64 [len(key)]). Children are keyed by their first token (page_size 1) or first page
(a tuple). A node's lock_ref counts the locks held on it or on any descendant, so a node is
evictable exactly when lock_ref == 0; only unlocked leaves are ever evicted, least recently used
first. Time is a counter bumped once per match/insert, so tests are deterministic.

Invariants kept incrementally (check_tree() recomputes them):
  evictable_size = sum(len(key)) over nodes with lock_ref == 0, locked_size over the rest;
  parent.lock_ref >= child.lock_ref; parent.last_access >= child.last_access;
  _leaves holds exactly the childless non-root nodes.
"""
from __future__ import annotations

import heapq
from itertools import count
from typing import Hashable, Optional, Sequence

import torch

from .base import FreeFn, InsertResult, MatchResult, PrefixCache


class Node:
    """One run of tokens and their KV slots. Fields are read-only outside RadixCache."""

    __slots__ = ("key", "value", "parent", "children", "lock_ref", "last_access", "id")
    _ids = count()

    def __init__(self, key: list[int], value: torch.Tensor, parent: Optional[Node],
                 last_access: int):
        self.key = key                                   # token ids, len a multiple of page_size
        self.value = value                               # int64 [len(key)] KV slots
        self.parent = parent                             # None for the root and for evicted nodes
        self.children: dict[Hashable, Node] = {}
        self.lock_ref = 0
        self.last_access = last_access
        self.id = next(Node._ids)                        # heap tie-break: nodes are not ordered

    def __repr__(self) -> str:
        return f"Node(len={len(self.key)}, lock_ref={self.lock_ref}, t={self.last_access})"


class RadixCache(PrefixCache):
    """Prefix cache over a radix tree of token ids; frees slots only in `evict` (`free_slots`)."""

    def __init__(self, free_slots: FreeFn, page_size: int = 1):
        if page_size < 1:
            raise ValueError(f"page_size must be >= 1, got {page_size}")
        self.free_slots, self.page_size = free_slots, page_size
        self.reset()

    def reset(self) -> None:
        """Forget every node and zero the counters; frees nothing (see PrefixCache.reset)."""
        self.root = Node([], torch.empty(0, dtype=torch.int64), None, 0)
        self._leaves: set[Node] = set()
        self._clock = 0
        self._evictable = self._locked = 0

    # ---- match / insert -------------------------------------------------------------------------

    def match_prefix(self, ids: Sequence[int]) -> MatchResult:
        """Longest cached page-aligned prefix of `ids`. Touches the matched path (LRU) and splits
        the last node if the match ends inside it, so `node` covers exactly the prefix. The slots
        are a fresh tensor, valid only while `node` is locked (lock it before anything evicts)."""
        node, _, values = self._walk(self._as_list(ids))
        if not values:
            return MatchResult(self.root.value.new_empty(0), node)
        return MatchResult(torch.cat(values), node)

    def insert(self, ids: Sequence[int], slots: torch.Tensor) -> InsertResult:
        """Add `ids[:aligned_len]` (whole pages) with `slots`, splitting nodes as needed; touches
        the path. The cache copies `slots[prefix_len:aligned_len]` and owns those slots; it frees
        nothing here: the caller frees its duplicates and the unaligned tail (ownership rule in
        base.py). Raises ValueError unless there is one slot per id."""
        ids = self._as_list(ids)
        if slots.dim() != 1 or slots.numel() != len(ids):
            raise ValueError(f"insert needs one slot per token: {len(ids)} ids, slots of shape "
                             f"{tuple(slots.shape)}")
        aligned = len(ids) // self.page_size * self.page_size
        del ids[aligned:]
        node, pos, _ = self._walk(ids)
        if pos < aligned:
            leaf = Node(ids[pos:], slots[pos:aligned].to(torch.int64, copy=True), node, self._clock)
            node.children[self._child_key(leaf.key)] = leaf
            self._leaves.discard(node)
            self._leaves.add(leaf)
            self._evictable += aligned - pos
        return InsertResult(pos, aligned)

    def _walk(self, ids: list[int]) -> tuple[Node, int, list[torch.Tensor]]:
        """Follow `ids` (already page-aligned or truncated here) down the tree with a new timestamp;
        split where the match ends inside a node. Returns (deepest node, matched length, values)."""
        self._clock += 1
        now, ps, n = self._clock, self.page_size, len(ids) // self.page_size * self.page_size
        node, pos, values = self.root, 0, []
        node.last_access = now
        while pos < n:
            child = node.children.get(self._child_key(ids, pos))
            if child is None:
                break
            key = child.key
            m = len(key)
            if ids[pos:pos + m] != key:                  # ends inside child: split there
                m = self._common_len(key, ids, pos, n) // ps * ps   # >= ps: first page matched
                child = self._split(child, m)
            child.last_access = now
            values.append(child.value)
            node, pos = child, pos + m
            if m < len(key):
                break
        return node, pos, values

    def _split(self, node: Node, m: int) -> Node:
        """Cut `node` after its first `m` tokens; returns the new parent holding them."""
        parent = node.parent
        assert parent is not None and 0 < m < len(node.key)
        new = Node(node.key[:m], node.value[:m], parent, node.last_access)
        new.lock_ref = node.lock_ref
        parent.children[self._child_key(new.key)] = new
        node.key, node.value, node.parent = node.key[m:], node.value[m:], new
        new.children[self._child_key(node.key)] = node
        return new

    @staticmethod
    def _common_len(key: list[int], ids: list[int], pos: int, end: int) -> int:
        m = 0
        for a, b in zip(key, ids[pos:end]):
            if a != b:
                break
            m += 1
        return m

    def _child_key(self, ids: list[int], pos: int = 0) -> Hashable:
        if self.page_size == 1:
            return ids[pos]
        return tuple(ids[pos:pos + self.page_size])

    @staticmethod
    def _as_list(ids: Sequence[int]) -> list[int]:
        return ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)

    # ---- lock / evict ---------------------------------------------------------------------------

    def lock(self, node: Node) -> None:
        """Pin `node` and its ancestors (the root is never counted); moves their tokens from
        evictable to locked when a node goes 0 -> 1. O(depth)."""
        if node.parent is None and node is not self.root:
            raise ValueError("lock on an evicted node: lock right after match_prefix")
        while node is not self.root:
            if node.lock_ref == 0:
                self._evictable -= len(node.key)
                self._locked += len(node.key)
            node.lock_ref += 1
            node = node.parent

    def unlock(self, node: Node) -> None:
        """Undo one `lock(node)`; raises AssertionError if `node` is not locked. O(depth)."""
        if node is not self.root and node.lock_ref <= 0:
            raise AssertionError(f"unlock of an unlocked node {node!r}")
        while node is not self.root:
            node.lock_ref -= 1
            if node.lock_ref == 0:
                self._evictable += len(node.key)
                self._locked -= len(node.key)
            node = node.parent

    def evict(self, num_tokens: int) -> int:
        """Free unlocked leaves, least recently used first, through `free_slots` until at least
        `num_tokens` slots are freed or nothing is evictable; a parent becomes a candidate once its
        last child is gone. Returns the number of slots freed. Removes the evicted nodes."""
        heap = [(n.last_access, n.id, n) for n in self._leaves if n.lock_ref == 0]
        heapq.heapify(heap)
        freed = 0
        while freed < num_tokens and heap:
            _, _, node = heapq.heappop(heap)
            self.free_slots(node.value)
            freed += len(node.key)
            parent = self._remove_leaf(node)
            if parent in self._leaves and parent.lock_ref == 0:
                heapq.heappush(heap, (parent.last_access, parent.id, parent))
        return freed

    def _remove_leaf(self, node: Node) -> Node:
        parent = node.parent
        assert parent is not None and not node.children and node.lock_ref == 0
        del parent.children[self._child_key(node.key)]
        self._leaves.discard(node)
        if not parent.children and parent is not self.root:
            self._leaves.add(parent)
        self._evictable -= len(node.key)
        node.parent = None
        return parent

    # ---- sizes, checks, dump --------------------------------------------------------------------

    def evictable_size(self) -> int:
        """Slots held by nodes no lock pins (O(1))."""
        return self._evictable

    def locked_size(self) -> int:
        """Slots held by nodes some lock pins (O(1))."""
        return self._locked

    def total_size(self) -> int:
        """All slots held by the cache (O(1))."""
        return self._evictable + self._locked

    def check_tree(self) -> None:
        """Walk the whole tree and raise AssertionError unless its structure and the incremental
        counters agree (for tests and debugging: O(tree size))."""
        evictable = locked = 0
        leaves, stack = set(), [self.root]
        while stack:
            node = stack.pop()
            for ck, child in node.children.items():
                assert child.parent is node and ck == self._child_key(child.key), child
                assert len(child.key) > 0 and len(child.key) % self.page_size == 0, child
                assert child.value.shape == (len(child.key),), child
                assert child.lock_ref >= 0, child
                assert node is self.root or node.lock_ref >= child.lock_ref, (node, child)
                assert node.last_access >= child.last_access, (node, child)
                if child.lock_ref:
                    locked += len(child.key)
                else:
                    evictable += len(child.key)
                if not child.children:
                    leaves.add(child)
                stack.append(child)
        if (evictable, locked) != (self._evictable, self._locked) or leaves != self._leaves:
            raise AssertionError(f"counters evictable {self._evictable} locked {self._locked} "
                                 f"leaves {len(self._leaves)}; tree has {evictable}, {locked}, "
                                 f"{len(leaves)}")

    def dump(self, preview: int = 8) -> str:
        """The tree as indented lines: key preview, length, lock_ref, last access."""
        lines = [f"root evictable={self._evictable} locked={self._locked}"]
        stack = [(child, 1) for child in reversed(list(self.root.children.values()))]
        while stack:
            node, depth = stack.pop()
            key = " ".join(map(str, node.key[:preview]))
            key += " ..." if len(node.key) > preview else ""
            lines.append(f"{'  ' * depth}[{key}] len={len(node.key)} lock={node.lock_ref} "
                         f"t={node.last_access}")
            stack.extend((child, depth + 1) for child in reversed(list(node.children.values())))
        return "\n".join(lines)
