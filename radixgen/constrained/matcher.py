"""The per-request half of a grammar: where this request stands in the shared automaton."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .grammar_base import Grammar
from .mask import row_ids
from .json_close import JsonScan, Limits, keeps, limit, scan

EOS_TAKEN = -1  # pseudo-state pushed once EOS has been accepted


class MatcherBase:
    """What every per-request matcher (this module's, tag_matcher.TagMatcher) offers the engine
    beside its own advance / rollback: a run of tokens accepted whole or not at all."""

    def advance(self, token_id: int) -> bool:
        raise NotImplementedError

    def rollback(self, n: int) -> None:
        raise NotImplementedError

    def advance_tokens(self, token_ids: Sequence[int]) -> bool:
        """Accept all of `token_ids` or none of them (jump-forward re-tokenized text)."""
        for i, tid in enumerate(token_ids):
            if not self.advance(tid):
                self.rollback(i)
                return False
        return True


class GrammarMatcher(MatcherBase):
    """State stack over a Grammar: advance, rollback, masks, forced text.

    The stack holds the automaton state after each accepted token (initial state first), so
    `rollback(n)` is a pop and costs nothing; the engine uses it to undo speculative or
    jump-forward tokens.
    """

    def __init__(self, grammar: Grammar) -> None:
        self.grammar = grammar
        self._states: list[int] = [grammar.initial_state]
        # int32 [W]: tokens that open one of the request's stop strings, allowed wherever the text
        # so far is complete (see allow_stops); None: the grammar's rows alone
        self._stop_row: torch.Tensor | None = None
        # JSON strings and arrays closed at a length (json_close.py): the lexical state after each
        # accepted token, in step with _states; (num_tokens, limit kind, restricted row or None):
        # one step's cache, so the limit is worked out once a step
        self._limits = getattr(grammar, "close_limits", Limits())
        self._closes = self._limits != Limits()
        self._json_scans: list[JsonScan] = [JsonScan()]
        self._closing: tuple[int, str | None, torch.Tensor | None] | None = None

    def allow_stops(self, stop_row: torch.Tensor) -> None:
        """Where the text so far is complete, also allow the tokens of `stop_row` (those that start
        with one of the request's stop strings). Such a token ends the request at the stop string,
        which is trimmed, so the output is the complete text before it: still a match. Without this
        a model that wants to end `24` with " hours" under `[0-9]+` and stop=" " finds no room and
        writes digits to max_tokens."""
        self._stop_row = stop_row

    @property
    def state(self) -> int:
        return self._states[-1]

    @property
    def num_tokens(self) -> int:
        """Tokens accepted so far (EOS included)."""
        return len(self._states) - 1

    def fill_bitmask(self, bitmask: torch.Tensor, row: int) -> None:
        """Write this request's allowed tokens into bitmask[row] (int32 [B, W], W >= the
        grammar's width; words past the tokenizer's vocabulary are cleared)."""
        width = (self.grammar.vocab_size + 31) // 32
        if bitmask.shape[1] < width:
            raise ValueError(f"bitmask has {bitmask.shape[1]} words a row, the vocabulary needs {width}")
        bitmask[row, :width].copy_(self._row_tensor())
        bitmask[row, width:] = 0

    def _row_tensor(self) -> torch.Tensor:
        if self.state == EOS_TAKEN:
            return self._eos_only()
        closing = self._closing_row()
        if closing is not None:
            return closing
        return self._grammar_row()

    def _grammar_row(self) -> torch.Tensor:
        row = self.grammar.row_tensor(self.state)
        if self._stop_row is not None and self.grammar.is_accepting(self.state):
            row = row | self._stop_row
        return row

    def _closing_row(self) -> torch.Tensor | None:
        """The grammar's row cut to the tokens that close the string or array being written, when
        it has reached its limit and some such token is allowed; else None (cached per step)."""
        if not self._closes:
            return None
        if self._closing is None or self._closing[0] != self.num_tokens:
            kind, row = limit(self._json_scans[-1], self._limits), None
            if kind is not None:
                row = self._grammar_row() & self.grammar.keeping_row(kind)
                # past the depth, a space alone is no way out: where only a space or `{` may follow
                # (`"b": {` of a declared object), the object opens as the model writes it
                rest = row & ~self.grammar.keeping_row("blank") if kind.startswith("depth") else row
                row = row if bool(rest.any()) else None
            self._closing = (self.num_tokens, kind, row)
        return self._closing[2]

    def _closes_here(self, piece: bytes) -> bool:
        """Whether a token of these bytes is allowed by the closing limits (the grammar aside)."""
        return self._closing_row() is None or keeps(self._closing[1], piece)

    def _eos_only(self) -> torch.Tensor:
        row = torch.zeros((self.grammar.vocab_size + 31) // 32, dtype=torch.int32)
        eos = self.grammar.eos_token_id
        bit = 1 << (eos & 31)
        row[eos >> 5] = bit - (1 << 32) if bit >= 1 << 31 else bit  # int32 two's complement
        return row

    def allowed_token_ids(self) -> np.ndarray:
        """Allowed ids of the current state, ascending (tests and debugging; not the hot path)."""
        return row_ids(self._row_tensor().numpy())[: self.grammar.vocab_size]

    def is_allowed(self, token_id: int) -> bool:
        if self.state == EOS_TAKEN:
            return token_id == self.grammar.eos_token_id
        if token_id == self.grammar.eos_token_id:
            return self.grammar.is_accepting(self.state)
        if self.grammar.next_state(self.state, token_id) is None:
            return False
        return self._closes_here(self.grammar.token_vocab.matrix.pieces[token_id] or b"")

    def advance(self, token_id: int) -> bool:
        """Accept one token; False (and no change) if the grammar does not allow it here."""
        state = self.state
        if state == EOS_TAKEN:
            return False
        if token_id == self.grammar.eos_token_id:
            if not self.grammar.is_accepting(state):
                return False
            self._states.append(EOS_TAKEN)
            if self._closes:
                self._json_scans.append(self._json_scans[-1])
            return True
        nxt = self.grammar.next_state(state, token_id)
        if nxt is None:
            return False
        if self._closes:
            piece = self.grammar.token_vocab.matrix.pieces[token_id] or b""
            if not self._closes_here(piece):
                return False
            self._json_scans.append(scan(self._json_scans[-1], piece))
        self._states.append(nxt)
        return True

    def rollback(self, n: int) -> None:
        """Undo the last n accepted tokens."""
        if n < 0 or n > self.num_tokens:
            raise ValueError(f"cannot roll back {n} tokens, {self.num_tokens} were accepted")
        if n:
            del self._states[-n:]
            if self._closes:
                del self._json_scans[-n:]

    def reset(self) -> None:
        del self._states[1:], self._json_scans[1:]

    def can_end(self) -> bool:
        """The text so far is complete: EOS is allowed (or was taken)."""
        return self.state == EOS_TAKEN or self.grammar.is_accepting(self.state)

    def is_finished(self) -> bool:
        """EOS was taken, or the text is complete and nothing may follow it."""
        state = self.state
        if state == EOS_TAKEN:
            return True
        return self.grammar.is_accepting(state) and not self.grammar.has_continuation(state)

    def forced_string(self) -> str | None:
        """The longest text every continuation from here starts with (None if none), for
        jump-forward. Stops at an accepting state and before an incomplete UTF-8 character."""
        if self.state == EOS_TAKEN:
            return None
        forced = self.grammar.forced_bytes(self.state)
        return forced.decode("utf-8") if forced else None


def fill_batch_bitmask(bitmask: torch.Tensor, matchers: Sequence[GrammarMatcher | None]) -> None:
    """Rows of a whole batch at once: row i from matchers[i], all ones where it is None
    (an unconstrained request). One stacked copy instead of one copy per request."""
    constrained = [i for i, m in enumerate(matchers) if m is not None]
    bitmask.fill_(-1)
    if not constrained:
        return
    rows = torch.stack([matchers[i]._row_tensor() for i in constrained])  # type: ignore[union-attr]
    index = torch.tensor(constrained, device=bitmask.device)
    width = rows.shape[1]
    bitmask[:, width:].index_fill_(0, index, 0)  # tokens past the tokenizer's vocabulary
    bitmask[:, :width].index_copy_(0, index, rows.to(bitmask.device))
