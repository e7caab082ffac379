"""The per-request half of a structural tag: which phase the text is in, and the phase's matcher.

Offers what the engine asks of a GrammarMatcher (masks, advance, rollback, forced text, can_end,
is_finished). Each accepted token pushes an immutable `_Pos`; a phase's sub-matcher (a
GrammarMatcher of one of TagGrammar's parts) is kept by the positions that use it with its token
count, so `rollback(n)` pops n positions and rolls the current sub-matcher back to its count.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from .grammar_base import Grammar
from .mask import row_ids
from .matcher import MatcherBase

FREE, OPEN, CONTENT, END, DONE, EOS = "free", "open", "content", "end", "done", "eos"


@dataclass(frozen=True)
class Opener:
    """The text that opens a tag from one point: alternatives (bytes -> tag index) and the choices
    grammar over them; None when a single tag opens with nothing more to write."""
    grammar: Grammar | None
    alternatives: dict[bytes, int]


@dataclass(frozen=True)
class _Pos:
    mode: str
    tags_done: int
    tail: bytes = b""               # FREE: the end of the text that may begin a trigger
    opener: Opener | None = None  # OPEN: what may open a tag here
    said: bytes = b""               # OPEN: bytes written of the opener so far
    tag: int = -1                   # CONTENT / END: the tag being written
    sub: Any = None                 # OPEN / CONTENT / END: the phase's GrammarMatcher
    sub_len: int = 0                # its num_tokens at this position


def _set_bit(row: torch.Tensor, token_id: int, on: bool) -> torch.Tensor:
    """A copy of packed row int32 [W] with one token's bit set or cleared."""
    row = row.clone()
    word, bit = token_id >> 5, 1 << (token_id & 31)
    value = int(row[word]) & 0xFFFFFFFF
    value = value | bit if on else value & ~bit
    row[word] = value - (1 << 32) if value >= 1 << 31 else value
    return row


class TagMatcher(MatcherBase):
    def __init__(self, grammar: Any) -> None:
        """grammar: a tag_grammar.TagGrammar (not imported: that module imports this one)."""
        self.grammar = grammar
        fmt = grammar.format
        self._min_tags = 1 if fmt.at_least_one else 0
        start = _Pos(FREE, 0) if fmt.free_text else self._open(grammar.openers["first"], 0)
        self._stack: list[_Pos] = [start]
        self._stop_row: torch.Tensor | None = None

    # ---- phases ----
    def _open(self, opener: Opener, tags_done: int) -> _Pos:
        if opener.grammar is None:  # one tag, nothing left to write of its begin
            return self._content(opener.alternatives[b""], tags_done)
        return _Pos(OPEN, tags_done, opener=opener, sub=opener.grammar.new_matcher())

    def _content(self, tag: int, tags_done: int) -> _Pos:
        return _Pos(CONTENT, tags_done, tag=tag, sub=self.grammar.contents[tag].new_matcher())

    def _after_content(self, tag: int, tags_done: int) -> _Pos:
        end = self.grammar.ends[tag]
        if end is None:
            return self._after_tag(tags_done + 1)
        return _Pos(END, tags_done, tag=tag, sub=end.new_matcher())

    def _after_tag(self, tags_done: int) -> _Pos:
        fmt = self.grammar.format
        if fmt.stop_after_first:
            return _Pos(DONE, tags_done)
        if fmt.free_text:
            return _Pos(FREE, tags_done)
        return self._open(self.grammar.openers["next"], tags_done)

    @property
    def _pos(self) -> _Pos:
        return self._stack[-1]

    @property
    def num_tokens(self) -> int:
        return len(self._stack) - 1

    def allow_stops(self, stop_row: torch.Tensor) -> None:
        """Where the output may end, also allow tokens that open a stop string (GrammarMatcher's)."""
        self._stop_row = stop_row

    # ---- masks ----
    def can_end(self) -> bool:
        pos = self._pos
        if pos.mode in (DONE, EOS):
            return True
        if pos.tags_done < self._min_tags:
            return False
        # between tags of a format without free text; never inside an opener after a trigger
        between = pos.mode == OPEN and not pos.said and not self.grammar.format.free_text
        return pos.mode == FREE or between

    def _row_tensor(self) -> torch.Tensor:
        """int32 [W] allowed tokens (the protocol matcher.fill_batch_bitmask reads)."""
        pos, eos = self._pos, self.grammar.eos_token_id
        if pos.mode in (DONE, EOS):
            return _set_bit(torch.zeros((self.grammar.vocab_size + 31) // 32, dtype=torch.int32), eos, True)
        if pos.mode == FREE:
            row = self.grammar.free_row(pos.tail)
        elif pos.mode == CONTENT:
            row = _set_bit(pos.sub._row_tensor(), eos, False)
            end = self.grammar.ends[pos.tag]
            if pos.sub.can_end() and end is not None:
                row = row | end.row_tensor(end.initial_state)
        else:
            row = pos.sub._row_tensor()
        ends = self.can_end()
        if ends and self._stop_row is not None:
            row = row | self._stop_row
        return _set_bit(row, eos, ends)

    def fill_bitmask(self, bitmask: torch.Tensor, row: int) -> None:
        width = (self.grammar.vocab_size + 31) // 32
        bitmask[row, :width].copy_(self._row_tensor())
        bitmask[row, width:] = 0

    def allowed_token_ids(self) -> np.ndarray:
        return row_ids(self._row_tensor().numpy())[: self.grammar.vocab_size]

    def is_allowed(self, token_id: int) -> bool:
        if not self.advance(token_id):  # advancing moves sub-matchers: try, then undo
            return False
        self.rollback(1)
        return True

    # ---- moves ----
    def advance(self, token_id: int) -> bool:
        nxt = self._step(token_id)
        if nxt is None:
            return False
        self._stack.append(nxt)
        return True

    def _step(self, tid: int) -> _Pos | None:
        """The position after token `tid`, or None if it is not allowed (sub-matchers that accept it
        are advanced: the caller pushes the result)."""
        pos, g = self._pos, self.grammar
        if tid == g.eos_token_id:
            return _Pos(EOS, pos.tags_done) if self.can_end() else None
        if pos.mode in (DONE, EOS) or not 0 <= tid < g.vocab_size:
            return None
        if pos.mode == FREE:
            piece = g.piece(tid)
            if piece is None:  # a special token: no text, so no trigger across it
                return replace(pos, tail=b"")
            if not g.free_allows(pos.tail, tid):
                return None
            trigger, tail = g.free_step(pos.tail, piece)
            return replace(pos, tail=tail) if trigger is None else self._open(g.openers[trigger], pos.tags_done)
        sub = pos.sub
        if sub.advance(tid):
            if pos.mode == OPEN:
                said = pos.said + (g.piece(tid) or b"")
                if sub.is_finished():
                    return self._content(pos.opener.alternatives[said], pos.tags_done)
                return replace(pos, said=said, sub_len=sub.num_tokens)
            if sub.is_finished():
                return self._after_content(pos.tag, pos.tags_done) if pos.mode == CONTENT \
                    else self._after_tag(pos.tags_done + 1)
            return replace(pos, sub_len=sub.num_tokens)
        if pos.mode == CONTENT and sub.can_end() and g.ends[pos.tag] is not None:
            end = self._after_content(pos.tag, pos.tags_done)  # the end marker's first token
            return self._step_in(end, tid)
        return None

    def _step_in(self, pos: _Pos, tid: int) -> _Pos | None:
        """`tid` read at a fresh position (not yet on the stack)."""
        self._stack.append(pos)
        try:
            return self._step(tid)
        finally:
            self._stack.pop()

    def rollback(self, n: int) -> None:
        if n < 0 or n > self.num_tokens:
            raise ValueError(f"cannot roll back {n} tokens, {self.num_tokens} were accepted")
        if not n:
            return
        del self._stack[-n:]
        pos = self._pos
        if pos.sub is not None and pos.sub.num_tokens > pos.sub_len:
            pos.sub.rollback(pos.sub.num_tokens - pos.sub_len)

    def reset(self) -> None:
        self.rollback(self.num_tokens)

    def is_finished(self) -> bool:
        return self._pos.mode in (DONE, EOS)

    def forced_string(self) -> str | None:
        """Text every continuation starts with, inside a marker or a schema (None in free text or
        where the output may end)."""
        pos = self._pos
        if pos.sub is None or self.can_end():
            return None
        if pos.mode == CONTENT and pos.sub.can_end():
            return None
        return pos.sub.forced_string()

