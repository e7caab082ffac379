"""A ByteAutomaton whose regex holds SLOT bytes where free-form JSON values go.

The schema's regex is built by regex-automata as usual (byte_automaton.py), with one SLOT byte
(json_free.py) for each free-form value and a UNIQUE byte before each uniqueItems array. Neither
is ever text: here they are read as "a whole JSON value goes here" and "the next `[` opens a
uniqueItems array". A dense state then stands for a set of *items*, built lazily row by row
like the base class's states (a subset construction, since text may be read both by the regex
and by a slot: anyOf of a string and anything):

- an int q: the regex's DFA in state q (its outlines-core id);
- ("u", q): q reached through a UNIQUE byte; its transitions are q's, and the `[` they read
  opens a uniqueItems array (`opens_unique`, read by unique_items.py);
- (q, stack, lex): inside a free-form value, in json_free state (stack, lex); the regex goes on
  from q (the state after the SLOT byte) once the value is complete.

A state accepts if any item does. Rows never allow the marker, SLOT or UNIQUE bytes as text.
LazyGrammar walks tokens through these rows exactly as through the base class's.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from .byte_automaton import DEAD, ByteAutomaton
from .json_free import DONE, PASS, SLOT, UNIQUE, UNIQUE_REGEX, FreeJson

Item = object  # int | ("u", int) | (int, str, tuple)


class SlotAutomaton(ByteAutomaton):
    """Byte-level automaton of a regex with SLOT / UNIQUE bytes; `whitespace` is the pattern a
    free-form value allows after `,` and `:` (the converter's)."""

    def __init__(self, regex: str, marker: bytes, whitespace: str) -> None:
        self.whitespace = whitespace
        ws = ByteAutomaton(whitespace, marker)
        self._free = FreeJson(ws.initial_state, lambda q, b: _alive(ws.step(q, b)), ws.is_accepting)
        self._item_rows: dict[Item, dict[int, tuple[Item, ...]]] = {}
        self._unique: dict[int, frozenset[int]] = {}  # dense state -> bytes opening a unique array
        self.has_unique = UNIQUE_REGEX in regex
        super().__init__(regex, marker)

    def _start_key(self, outer: int) -> frozenset:
        return frozenset(self._closure(outer))

    def _closure(self, q: int) -> list[Item]:
        """The items one regex state stands for: itself, and past a UNIQUE byte if it has one."""
        after = self._index.get_next_state(q, UNIQUE)
        return [q] if after is None else [q, ("u", after)]

    # ---- rows ----------------------------------------------------------------------------

    def _read_row(self, q: int) -> None:
        targets: dict[int, set[Item]] = {}
        opens: set[int] = set()
        for item in self._outer[q]:
            for b, nexts in self._item_row(item).items():
                targets.setdefault(b, set()).update(nexts)
                if isinstance(item, tuple) and len(item) == 2:
                    opens.add(b)
        row = np.zeros(256, dtype=np.int32)
        for b, items in targets.items():
            if items:
                row[b] = self._id(frozenset(items))
        self.table[q] = row  # after _id: it may have replaced the table
        if opens:
            self._unique[q] = frozenset(opens)

    def _item_row(self, item: Item) -> dict[int, tuple[Item, ...]]:
        """byte -> the items it leads to from `item` (cached; items recur across states)."""
        row = self._item_rows.get(item)
        if row is None:
            if isinstance(item, int):
                row = self._regex_row(item)
            elif len(item) == 2:  # type: ignore[arg-type]
                row = self._item_row(item[1])  # type: ignore[index]
            else:
                row = self._free_row(*item)  # type: ignore[misc]
            self._item_rows[item] = row
        return row

    def _regex_row(self, q: int) -> dict[int, tuple[Item, ...]]:
        index, row = self._index, {}
        for b in index.get_allowed_tokens(q) or ():
            if b < 256 and b not in (self._marker, SLOT, UNIQUE):
                row[b] = tuple(self._closure(index.get_next_state(q, b)))
        after_slot = index.get_next_state(q, SLOT)
        if after_slot is not None:
            for b in range(256):
                starts = [(after_slot, *s) for s in self._free.start(b) if isinstance(s, tuple)]
                if starts:
                    row[b] = row.get(b, ()) + tuple(starts)
        return row

    def _free_row(self, q: int, stack: str, lex: tuple) -> dict[int, tuple[Item, ...]]:
        row: dict[int, tuple[Item, ...]] = {}
        for b in range(256):
            if b in (self._marker, SLOT, UNIQUE):
                continue
            nexts: list[Item] = []
            for out in self._free.step((stack, lex), b):
                if out == DONE:
                    nexts += self._closure(q)
                elif out == PASS:  # a number ended before b: the regex reads b from q
                    nexts += [n for c in self._closure(q) for n in self._item_row(c).get(b, ())]
                else:
                    nexts.append((q, *out))  # type: ignore[misc]
            if nexts:
                row[b] = tuple(nexts)
        return row

    # ---- queries -------------------------------------------------------------------------

    def is_accepting(self, state: int) -> bool:
        acc = self._accepting.get(state)
        if acc is None:
            acc = state != DEAD and any(self._item_accepts(i) for i in self._outer[state])
            self._accepting[state] = acc
        return acc

    def _item_accepts(self, item: Item) -> bool:
        if isinstance(item, int):
            nxt = self._index.get_next_state(item, self._marker)
            return nxt is not None and self._index.is_final_state(nxt)
        if len(item) == 2:  # type: ignore[arg-type]
            return False
        q, stack, lex = item  # type: ignore[misc]
        return self._free.accepts_here((stack, lex)) and self._item_accepts(q)

    def opens_unique(self, state: int, byte: int) -> bool:
        """Whether `byte` read in `state` opens a uniqueItems array."""
        self.row(state)
        return byte in self._unique.get(state, ())

    def items(self, state: int) -> Iterable[Item]:
        """The items a dense state stands for (tests and debugging)."""
        return self._outer[state]


def _alive(q: int) -> int | None:
    return None if q == DEAD else q
