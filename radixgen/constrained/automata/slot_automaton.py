"""A ByteAutomaton whose regex holds SLOT, UNIQUE and CALL bytes: a pushdown automaton.

The schema's regex is built by regex-automata as usual (byte_automaton.py), with one SLOT byte
(json_free.py) for each free-form value, a UNIQUE byte before each uniqueItems array and a CALL
byte for each recursive $ref (json_refs.py), which has a regex and an index of its own. None of
them is ever text: they read "a whole JSON value goes here", "the next `[` opens a uniqueItems
array" and "a value of that $ref goes here". A dense state then stands for a set of *items*,
built lazily row by row like the base class's states (a subset construction, since text may be
read both by the regex and by a slot or call: anyOf of a string and anything):

- ("r", a, q, ret): regex `a` (0 the schema's, else a CALL byte) in state q (its outlines-core
  id); `ret` is the call stack, the (regex, state) pairs to go on from once each called value
  is complete, innermost last;
- ("u", a, q, ret): the same reached through a UNIQUE byte: the `[` it reads opens a
  uniqueItems array (`opens_unique`, read by unique_items.py);
- ("j", a, q, ret, stack, lex): inside a free-form value, in json_free state (stack, lex); the
  regex goes on from ("r", a, q, ret) once the value is complete.

A call is followed at once (its items join the caller's), and so is a return where a called
regex may end. A state accepts if one of its items ends the schema's regex with no call open.
Rows never allow the marker or the SLOT, UNIQUE and CALL bytes as text. LazyGrammar walks tokens
through these rows exactly as through the base class's.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from .byte_automaton import DEAD, ByteAutomaton
from .call_automaton import RegexStack
from .index import BYTE_VOCAB, build_index
from .json_free import CALL_BYTES, DONE, PASS, SLOT, UNIQUE, UNIQUE_REGEX, FreeJson

MAX_CALLS = 32  # calls open at once (recursion depth of $refs; left recursion stops here)
Item = tuple


class SlotAutomaton(RegexStack):
    """Byte-level automaton of a regex with SLOT / UNIQUE / CALL bytes; `calls` maps a CALL byte
    to its regex (None: no value, the call is dead); `whitespace` is the pattern a free-form
    value allows after `,` and `:` (the converter's); `number_limits` the digit limits of its
    numbers (JsonOptions.number_limits, the converter's)."""

    def __init__(self, regex: str, marker: bytes, whitespace: str,
                 calls: dict[int, str | None] | None = None,
                 number_limits: tuple[int | None, int | None, int | None] = (None, None, None)) -> None:
        self.whitespace = whitespace
        ws = ByteAutomaton(whitespace, marker)
        self._free = FreeJson(ws.initial_state, lambda q, b: _alive(ws.step(q, b)), ws.is_accepting,
                              number_limits)
        # byte -> the free-form states it opens a value in (the same wherever a slot stands)
        self._slot_starts = {b: starts for b in range(256)
                             if (starts := [s for s in self._free.start(b) if isinstance(s, tuple)])}
        self._item_rows: dict[Item, dict[int, tuple[Item, ...]]] = {}
        self._closures: dict[Item, tuple[Item, ...]] = {}
        self._unique: dict[int, frozenset[int]] = {}  # dense state -> bytes opening a unique array
        self._special = frozenset({marker[0], SLOT, UNIQUE, *CALL_BYTES})
        self._init_stack()
        for byte, rx in (calls or {}).items():
            if rx is not None:
                self._add_regex(byte, build_index(rx, BYTE_VOCAB, marker), marker[0])
        self.has_unique = any(UNIQUE_REGEX in rx for rx in (regex, *(calls or {}).values()) if rx)
        super().__init__(regex, marker)


    def _closure(self, a: int, q: int, ret: tuple) -> tuple[Item, ...]:
        """The items regex `a` in state q stands for: itself, past a UNIQUE byte, inside every
        regex it may call here, and back in its caller where it may end (cached)."""
        key = (a, q, ret)
        out = self._closures.get(key)
        if out is None:
            index, items = self._indexes[a], [("r", a, q, ret)]
            after = index.get_next_state(q, UNIQUE)
            if after is not None:
                items.append(("u", a, after, ret))
            if len(ret) < MAX_CALLS:
                for c in self._starts.keys() - {0}:
                    back = index.get_next_state(q, c)
                    if back is not None:
                        items += self._closure(c, self._starts[c], ret + ((a, back),))
            if ret and self._final(a, q):
                items += self._closure(*ret[-1], ret[:-1])
            out = self._closures[key] = tuple(dict.fromkeys(items))
        return out

    # ---- rows ----------------------------------------------------------------------------

    def _read_row(self, q: int) -> None:
        targets: dict[int, set[Item]] = {}
        opens: set[int] = set()
        for item in self._outer[q]:
            for b, nexts in self._item_row(item).items():
                targets.setdefault(b, set()).update(nexts)
                if item[0] == "u":
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
            if item[0] == "j":
                row = self._free_row(*item[1:])
            elif item[0] == "u":  # reads like "r"; _read_row notes which bytes it read
                row = self._item_row(("r", *item[1:]))
            else:
                row = self._regex_row(*item[1:])
            self._item_rows[item] = row
        return row

    def _regex_row(self, a: int, q: int, ret: tuple) -> dict[int, tuple[Item, ...]]:
        index, row = self._indexes[a], {}
        for b in index.get_allowed_tokens(q) or ():
            if b < 256 and b not in self._special:
                row[b] = self._closure(a, index.get_next_state(q, b), ret)
        after_slot = index.get_next_state(q, SLOT)
        if after_slot is not None:
            for b, starts in self._slot_starts.items():
                row[b] = row.get(b, ()) + tuple(("j", a, after_slot, ret, *s) for s in starts)
        return row

    def _free_row(self, a: int, q: int, ret: tuple, stack: str, lex: tuple) -> dict[int, tuple[Item, ...]]:
        row: dict[int, tuple[Item, ...]] = {}
        for b in range(256):
            if b in self._special:
                continue
            nexts: list[Item] = []
            for out in self._free.step((stack, lex), b):
                if out == DONE:
                    nexts += self._closure(a, q, ret)
                elif out == PASS:  # a number ended before b: the regex reads b from q
                    nexts += [n for c in self._closure(a, q, ret) for n in self._item_row(c).get(b, ())]
                else:
                    nexts.append(("j", a, q, ret, *out))  # type: ignore[misc]
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
        if item[0] == "r":
            return not item[3] and self._final(item[1], item[2])
        if item[0] == "u":
            return False
        _, a, q, ret, stack, lex = item
        return self._free.accepts_here((stack, lex)) and any(map(self._item_accepts,
                                                                  self._closure(a, q, ret)))

    def opens_unique(self, state: int, byte: int) -> bool:
        """Whether `byte` read in `state` opens a uniqueItems array."""
        self.row(state)
        return byte in self._unique.get(state, ())

    def items(self, state: int) -> Iterable[Item]:
        """The items a dense state stands for (tests and debugging)."""
        return self._outer[state]


def _alive(q: int) -> int | None:
    return None if q == DEAD else q
