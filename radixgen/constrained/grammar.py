"""A regex indexed against a whole vocabulary ahead of time (CompiledGrammar); LazyGrammar
(lazy_grammar.py) serves automata too big to index ahead of time. The byte-level index both build
on, and why every regex is indexed between two end markers, are in automata/index.py.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from outlines_core import Index

from .automata.index import build_index, marker_is_safe, strip_anchors
from .grammar_base import Grammar
from .mask import row_has
from .matcher import GrammarMatcher
from .vocab import MARKERS, TokenVocab


class CompiledGrammar(Grammar):
    """outlines-core Indexes (one per vocabulary shard, see vocab.py): every state's allowed
    tokens precomputed at build time (~1 ms a state), so a mask row costs nothing at run time.
    grammar_base.Grammar caches rows, acceptance aside, and forced bytes per state."""

    def __init__(self, indexes: tuple[Index, ...], tv: TokenVocab, marker: bytes, regex: str,
                 compile_s: float = 0.0) -> None:
        super().__init__(tv, marker, regex, compile_s)
        self._indexes = indexes  # one per vocabulary shard; the same automaton states in each
        self._index = indexes[0]
        self._sentinel = tv.sentinel_ids[marker]
        self._marker_ids = tv.marker_token_ids[marker]
        # the index starts before the leading marker; the grammar starts after it
        self.initial_state = self._index.get_next_state(self._index.get_initial_state(), self._sentinel)
        self._accepting: dict[int, bool] = {}

    def new_matcher(self) -> GrammarMatcher:
        return GrammarMatcher(self)

    def is_accepting(self, state: int) -> bool:
        acc = self._accepting.get(state)
        if acc is None:
            nxt = self._index.get_next_state(state, self._sentinel)
            acc = nxt is not None and self._index.is_final_state(nxt)
            self._accepting[state] = acc
        return acc

    def _allowed_ids(self, state: int) -> np.ndarray:
        parts = [index.get_allowed_tokens(state) or [] for index in self._indexes]
        ids = np.concatenate([np.fromiter(p, dtype=np.int64, count=len(p)) for p in parts])
        ids = ids[(ids < self._tv.size) & (ids != self._tv.eos_token_id)]  # drop sentinels
        if self._marker_ids.size:
            ids = ids[~np.isin(ids, self._marker_ids)]
        return ids

    def next_state(self, state: int, token_id: int) -> int | None:
        if token_id < 0 or token_id >= self._tv.size or token_id == self._tv.eos_token_id:
            return None
        if not row_has(self.row(state), token_id):
            return None
        return self._indexes[self._tv.shard_of[token_id]].get_next_state(state, token_id)


def _build_indexes(regex: str, tv: TokenVocab, marker: bytes) -> tuple[Index, ...]:
    """One index per vocabulary shard, built concurrently (outlines-core releases the GIL)."""
    if len(tv.shards) == 1:
        return (build_index(regex, tv.shards[0], marker),)
    with ThreadPoolExecutor(len(tv.shards), thread_name_prefix="index") as pool:
        return tuple(pool.map(lambda vocab: build_index(regex, vocab, marker), tv.shards))


def compile_regex(regex: str, tv: TokenVocab, marker: bytes | None = None) -> CompiledGrammar:
    """Index `regex` (whole-text match) against `tv`. Pass `marker` only when the regex is known
    never to match that byte; otherwise candidates are tried and verified."""
    start = time.perf_counter()
    regex = strip_anchors(regex)
    if marker is None:
        marker = next((m for m in MARKERS if marker_is_safe(regex, m)), None)
    if marker is not None:
        indexes = _build_indexes(regex, tv, marker)
        return CompiledGrammar(indexes, tv, marker, regex, time.perf_counter() - start)
    raise ValueError("the regex can produce every ASCII control byte, newline included, so the end "
                     "marker that works around outlines-core 0.2.14's dropped transitions has no room; "
                     "exclude one control character (e.g. use [^\\x00] instead of (.|\\n) or [\\s\\S])")
