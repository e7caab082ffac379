"""A grammar for automata too big to index against the whole vocabulary ahead of time, or that
no regex index can hold (slot_automaton.py's pushdown for JSON schemas).

outlines-core's Index precomputes every state's allowed tokens, ~1 ms a state with a 49k-token
vocabulary, so an automaton of 20,000 states cannot be indexed within a 10 s compile budget.
LazyGrammar builds only the byte-level automaton (byte_automaton.py, cheap) and computes a
state's mask the first time a matcher asks for it, by walking every token's bytes through the
byte rows at once with numpy: position by position over the tokens still alive, longest tokens
first (vocab.TokenMatrix), so a step is one gather over what is left. A few ms per new state,
then cached like CompiledGrammar's rows; states never visited cost nothing.

The automaton is a ByteAutomaton, or a SlotAutomaton whose rows come from its items instead of
one index: the walk is the same. On a plain regex the result is bit-identical to
CompiledGrammar on the same vocabulary (the tests
check masks, next states and forced bytes): a token is allowed iff each of its bytes has a
transition, which is what the index keeps for `M(?:R)M`, and tokens holding M die at M's dead
column, as the index's masks drop them.
"""
from __future__ import annotations

import time

import numpy as np

from .automata.byte_automaton import DEAD, UNREAD, ByteAutomaton
from .automata.index import strip_anchors
from .grammar_base import Grammar, mask_first_bytes
from .matcher import GrammarMatcher
from .unique_items import UniqueMatcher
from .vocab import TokenVocab


class LazyGrammar(Grammar):
    """Masks computed per state on first use from a ByteAutomaton; states are its dense ids."""

    def __init__(self, automaton: ByteAutomaton, tv: TokenVocab, marker: bytes, regex: str,
                 compile_s: float = 0.0) -> None:
        super().__init__(tv, marker, regex, compile_s)
        self._automaton = automaton
        self.initial_state = automaton.initial_state
        # the bytes that have a single-byte token: a state's first bytes are read off its byte
        # row when every byte allowed there is one of them (see first_bytes)
        self._byte_has_token = tv.byte_token >= 0

    @property
    def automaton(self) -> ByteAutomaton:
        return self._automaton

    def new_matcher(self) -> GrammarMatcher:
        """A matcher that also keeps uniqueItems arrays distinct where the automaton marks them."""
        if getattr(self._automaton, "has_unique", False):
            return UniqueMatcher(self, self._automaton)
        return GrammarMatcher(self)

    def is_accepting(self, state: int) -> bool:
        return self._automaton.is_accepting(state)

    def next_state(self, state: int, token_id: int) -> int | None:
        if token_id < 0 or token_id >= self._tv.size:
            return None
        piece = self._tv.matrix.pieces[token_id]  # None for EOS and special tokens
        nxt = DEAD if piece is None else self._automaton.walk(state, piece)
        return None if nxt == DEAD else nxt

    def _allowed_ids(self, state: int) -> np.ndarray:
        """Every token walked from `state` at once. rows: int64 [n] indexes into the matrix of
        the tokens still alive, ascending (= longest first); cur: int64 [n] their states."""
        matrix, auto = self._tv.matrix, self._automaton
        rows = np.arange(matrix.longer[0], dtype=np.int64)
        nxt = auto.row(state)[matrix.columns[0]].astype(np.int64) if rows.size else rows
        done: list[np.ndarray] = [rows[:0]]
        for pos in range(1, matrix.columns.shape[0] + 1):
            alive = nxt != DEAD
            rows, cur = rows[alive], nxt[alive]
            # rows from longer[pos] on have just read their last byte: allowed, out of the walk
            cut = int(np.searchsorted(rows, matrix.longer[pos]))
            done.append(rows[cut:])
            rows, cur = rows[:cut], cur[:cut]
            if not rows.size:
                break
            flat = cur * 256 + matrix.columns[pos][rows]  # into the [capacity * 256] table
            nxt = auto.table.ravel().take(flat)
            unread = nxt == UNREAD
            if unread.any():  # states reached for the first time: read their rows, gather again
                nxt[unread] = auto.fill(cur[unread]).ravel().take(flat[unread])
        return matrix.ids[np.concatenate(done)]

    def first_bytes(self, state: int) -> np.ndarray:
        """Read off the byte row: a byte allowed there that has a single-byte token is a first
        byte (that token is allowed). Other allowed bytes may start only longer tokens, which
        may all die, so then the mask row decides (SmolLM2 lacks 0xF1 and 0xF2, which any JSON
        string allows; the row is cached, and the engine asks for it anyway)."""
        live = np.flatnonzero(self._automaton.row(state) != DEAD)
        if self._byte_has_token[live].all():
            return live
        return mask_first_bytes(self, state)


def compile_lazy(regex: str, tv: TokenVocab, marker: bytes) -> LazyGrammar:
    """A LazyGrammar for `regex` (whole-text match); `marker` must be a byte the regex can never
    produce (as for compile_regex with a known marker)."""
    start = time.perf_counter()
    regex = strip_anchors(regex)
    return LazyGrammar(ByteAutomaton(regex, marker), tv, marker, regex, time.perf_counter() - start)
