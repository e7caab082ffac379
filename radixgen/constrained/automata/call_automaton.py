"""A pushdown automaton over byte regexes that call each other: EBNF rules (ebnf.py).

Each called rule is a regex of its own (outlines-core's byte-level index, as byte_automaton.py
builds); where a regex calls rule c its text holds the two bytes CALL, c (never text: the
grammar's classes leave CALL out). As in slot_automaton.py, a dense state stands for a set of
*items* (a, q, ret): regex `a` (0 the root's, else a call id) in state q, `ret` the call stack,
the (regex, state) pairs to go on from once each called rule is complete, innermost last. A
call is followed at once (the callee's items join the caller's), and so is a return where a
callee may end; closures are computed with a work list, so nullable rules called in a loop
(`item*` where item may be empty) close without recursing forever. A state accepts if one of its
items ends the root's regex with no call open. Calls nest at most MAX_CALLS deep: deeper text
(JSON nested over ~40 levels in json-like grammars) is not allowed, a bound documented where
the grammar kind is.
"""
from __future__ import annotations

import numpy as np
from outlines_core import Index

from .byte_automaton import ByteAutomaton
from .index import BYTE_VOCAB, build_index

CALL = 0x01      # the byte before a call id in a rule's regex
MAX_CALLS = 128  # calls open at once
Item = tuple     # (a, q, ret)


class RegexStack(ByteAutomaton):
    """What a pushdown over called regexes shares (this module's and slot_automaton.py's): the
    regexes' indexes by id (0: the root's, added when the base class starts) and their initial
    states. Subclasses define `_closure(a, q, ret)`."""

    def _init_stack(self) -> None:
        self._indexes: dict[int, Index] = {}
        self._starts: dict[int, int] = {}  # regex -> its initial state (after the leading marker)

    def _add_regex(self, a: int, index: Index, marker: int) -> None:
        self._indexes[a] = index
        self._starts[a] = index.get_next_state(index.get_initial_state(), marker)

    def _start_key(self, outer: int) -> frozenset:
        self._add_regex(0, self._index, self._marker)
        return frozenset(self._closure(0, self._starts[0], ()))

    def _final(self, a: int, q: int) -> bool:
        """Whether regex `a` may end in state q."""
        index = self._indexes[a]
        nxt = index.get_next_state(q, self._marker)
        return nxt is not None and index.is_final_state(nxt)


class CallAutomaton(RegexStack):
    """Byte-level automaton of `regex` (the root rule's), whose CALL + id byte pairs call
    `calls[id]`; `marker` as for ByteAutomaton (a byte no rule writes)."""

    def __init__(self, regex: str, marker: bytes, calls: dict[int, str]) -> None:
        self._special = frozenset({marker[0], CALL})
        self._init_stack()
        self._item_rows: dict[Item, dict[int, tuple[Item, ...]]] = {}
        self._closures: dict[Item, tuple[Item, ...]] = {}
        for a, rx in calls.items():
            self._add_regex(a, build_index(rx, BYTE_VOCAB, marker), marker[0])
        super().__init__(regex, marker)


    def _closure(self, a: int, q: int, ret: tuple) -> tuple[Item, ...]:
        """The items regex `a` in state q stands for: itself, inside every rule it may call here,
        and back in its caller where it may end (cached)."""
        key = (a, q, ret)
        out = self._closures.get(key)
        if out is not None:
            return out
        seen: dict[Item, None] = {}
        todo = [key]
        while todo:
            item = todo.pop()
            if item in seen:
                continue
            seen[item] = None
            a, q, ret = item
            index = self._indexes[a]
            opened = index.get_next_state(q, CALL)
            if opened is not None and len(ret) < MAX_CALLS:
                for c in index.get_allowed_tokens(opened) or ():
                    if c in self._starts and c != 0:
                        todo.append((c, self._starts[c], ret + ((a, index.get_next_state(opened, c)),)))
            if ret and self._final(a, q):
                todo.append((*ret[-1], ret[:-1]))
        out = self._closures[key] = tuple(seen)
        return out

    def _read_row(self, q: int) -> None:
        targets: dict[int, set[Item]] = {}
        for item in self._outer[q]:
            for b, nexts in self._item_row(item).items():
                targets.setdefault(b, set()).update(nexts)
        row = np.zeros(256, dtype=np.int32)
        for b, items in targets.items():
            row[b] = self._id(frozenset(items))
        self.table[q] = row  # after _id: it may have replaced the table

    def _item_row(self, item: Item) -> dict[int, tuple[Item, ...]]:
        """byte -> the items it leads to from `item` (cached; items recur across states)."""
        row = self._item_rows.get(item)
        if row is None:
            a, q, ret = item
            index, row = self._indexes[a], {}
            for b in index.get_allowed_tokens(q) or ():
                if b < 256 and b not in self._special:
                    row[b] = self._closure(a, index.get_next_state(q, b), ret)
            self._item_rows[item] = row
        return row

    def is_accepting(self, state: int) -> bool:
        acc = self._accepting.get(state)
        if acc is None:
            acc = state != 0 and any(a == 0 and not ret and self._final(a, q) for a, q, ret in self._outer[state])
            self._accepting[state] = acc
        return acc
