"""A regex's DFA over single bytes, each state's row read only when a walk first needs it.

outlines-core's Index over the 256 single-byte tokens (grammar.BYTE_VOCAB) is cheap to build
even for automata of 10^5 states: at most 256 transitions a state, against tens of thousands
with a real vocabulary. Reading all of it back (get_transitions) would build Python dicts of
every transition, so rows are read one state at a time into a growing table that numpy can
gather from: `table` int32 [capacity, 256], table[q, b] = the state after byte b in state q.

State ids are dense: 0 is the dead state (its row is all 0, so a walk needs no masking: once
dead, always dead), the others are numbered 1, 2, ... in order of discovery. A row not read yet
is all UNREAD (-1), so a gather tells by itself which states still need reading. The index is built
for `M(?:R)M` (see index.py) and the marker byte's column is always dead: in the regex's
language M is never text, only the end, and acceptance is read through it by `is_accepting`.
"""
from __future__ import annotations

import threading

import numpy as np

from .index import BYTE_VOCAB, build_index

DEAD = 0
UNREAD = -1


class ByteAutomaton:
    """The byte-level DFA of `M(?:regex)M`, rows materialized lazily; thread-safe to share
    (rows are written under a lock, and a grown table holds every row read before it grew; a
    reader holding an older table sees UNREAD at worst, and asks `fill` again)."""

    def __init__(self, regex: str, marker: bytes) -> None:
        self._index = build_index(regex, BYTE_VOCAB, marker)
        self._marker = marker[0]
        self._dense: dict[object, int] = {}  # outlines-core state (or a subclass's key) -> dense id
        self._outer: list = [-1]  # dense id -> that state or key (none for DEAD)
        self.table = np.full((1024, 256), UNREAD, dtype=np.int32)
        self.table[DEAD] = DEAD
        self._accepting: dict[int, bool] = {}
        self._lock = threading.Lock()
        with self._lock:
            index = self._index
            self.initial_state = self._id(self._start_key(index.get_next_state(index.get_initial_state(),
                                                                               self._marker)))

    def _start_key(self, outer: int) -> object:
        """What the initial state's dense id stands for (slot_automaton.py widens it)."""
        return outer

    @property
    def discovered(self) -> int:
        """States seen so far, DEAD excluded (each is reachable from the initial state)."""
        return len(self._outer) - 1

    def _id(self, outer: object) -> int:
        """Dense id of an outlines-core state (or a subclass's key), numbering it if new
        (caller holds the lock)."""
        q = self._dense.get(outer)
        if q is None:
            q = len(self._outer)
            self._dense[outer] = q
            self._outer.append(outer)
            if q == len(self.table):  # double; the copy holds every row read (see class doc)
                self.table = np.concatenate([self.table, np.full_like(self.table, UNREAD)])
        return q

    def fill(self, states: np.ndarray) -> np.ndarray:
        """Read the rows of `states` (int [n] dense ids) not read yet; returns the table that
        holds them (the table is replaced when it grows, so callers use this one)."""
        with self._lock:
            for q in np.unique(states).tolist():
                if self.table[q, 0] == UNREAD:
                    self._read_row(q)
            return self.table

    def _read_row(self, q: int) -> None:
        outer, index = self._outer[q], self._index
        row = np.zeros(256, dtype=np.int32)
        for b in index.get_allowed_tokens(outer) or ():
            if b < 256 and b != self._marker:
                row[b] = self._id(index.get_next_state(outer, b))
        self.table[q] = row  # after _id: it may have replaced the table

    def row(self, state: int) -> np.ndarray:
        """int32 [256] next state of each byte in `state` (DEAD where not allowed)."""
        row = self.table[state]
        return row if row[0] != UNREAD else self.fill(np.array([state]))[state]

    def step(self, state: int, byte: int) -> int:
        """The state after one byte (DEAD if the byte is not allowed)."""
        nxt = int(self.table[state, byte])
        return nxt if nxt != UNREAD else int(self.fill(np.array([state]))[state, byte])

    def walk(self, state: int, data: bytes) -> int:
        """The state after `data` (DEAD as soon as a byte is not allowed)."""
        for byte in data:
            state = self.step(state, byte)
            if state == DEAD:
                break
        return state

    def is_accepting(self, state: int) -> bool:
        """Whether the text that led to `state` is in the regex's language: the end marker leads
        to a final state."""
        acc = self._accepting.get(state)
        if acc is None:
            nxt = self._index.get_next_state(self._outer[state], self._marker) if state != DEAD else None
            acc = nxt is not None and self._index.is_final_state(nxt)
            self._accepting[state] = acc
        return acc

    def count_states(self, cap: int) -> int:
        """States reachable from the initial state by text, exact up to `cap`; past it, some
        number > cap. A breadth-first walk (dense ids are in discovery order), so the rows it
        reads serve later walks too."""
        q = self.initial_state
        while q <= self.discovered and self.discovered <= cap:
            self.row(q)
            q += 1
        return self.discovered
