"""What every grammar offers matchers and the engine, and the per-state caches they share.

A grammar is a regex compiled against a TokenVocab. Its states are ints, which a matcher stacks
and rolls back. Two kinds exist: CompiledGrammar (grammar.py) reads allowed tokens from an
outlines-core index precomputed for the whole vocabulary, LazyGrammar (lazy_grammar.py) computes
them on first use from a byte-level automaton. Subclasses say which real tokens a state allows,
whether it accepts, where a token leads; this class turns that into packed mask rows and forced
text, each cached at most once per state, so any number of matchers (requests) can share one
grammar.
"""
from __future__ import annotations

import numpy as np
import torch

from .jump_forward import compute_forced_bytes, mask_first_bytes
from .mask import pack_ids
from .matcher import GrammarMatcher
from .vocab import TokenVocab


class Grammar:
    """The interface and caches; `initial_state` is set by the subclass."""

    initial_state: int

    def __init__(self, tv: TokenVocab, marker: bytes, regex: str, compile_s: float = 0.0) -> None:
        self._tv = tv
        self.marker = marker  # the end marker byte (see grammar.py's docstring)
        self.regex = regex
        self.compile_s = compile_s
        self.info: dict[str, int | str] = {}  # how it was built (path, states, narrowing step)
        self._rows: dict[int, tuple[np.ndarray, torch.Tensor]] = {}
        self._has_text: dict[int, bool] = {}
        self._forced: dict[int, bytes] = {}

    def __getstate__(self) -> dict:
        """Pickled (by the compile sandbox) without the vocabulary, which the receiver re-attaches,
        and without the row caches, which refill on use."""
        return {**self.__dict__, "_tv": None, "_rows": {}, "_has_text": {}, "_forced": {}}

    @property
    def vocab_size(self) -> int:
        return self._tv.size

    @property
    def eos_token_id(self) -> int:
        return self._tv.eos_token_id

    @property
    def token_vocab(self) -> TokenVocab:
        return self._tv

    def new_matcher(self) -> GrammarMatcher:
        return GrammarMatcher(self)

    def is_accepting(self, state: int) -> bool:
        """Whether the text that led to `state` is in the regex's language."""
        raise NotImplementedError

    def next_state(self, state: int, token_id: int) -> int | None:
        """The state after a real token, None if the token is not allowed there."""
        raise NotImplementedError

    def _allowed_ids(self, state: int) -> np.ndarray:
        """int64 [n] ids of the real tokens (never EOS) allowed in `state`, in any order."""
        raise NotImplementedError

    def first_bytes(self, state: int) -> np.ndarray:
        """Distinct first bytes of the real tokens allowed in `state`, ascending."""
        return mask_first_bytes(self, state)

    def has_continuation(self, state: int) -> bool:
        """Whether some real token may follow `state`."""
        self.row(state)
        return self._has_text[state]

    def row(self, state: int) -> np.ndarray:
        """Allowed tokens of `state` as a packed int32 [W] row (EOS set iff accepting)."""
        return self._row(state)[0]

    def row_tensor(self, state: int) -> torch.Tensor:
        """The same row as a CPU int32 [W] tensor sharing the numpy buffer."""
        return self._row(state)[1]

    def _row(self, state: int) -> tuple[np.ndarray, torch.Tensor]:
        cached = self._rows.get(state)
        if cached is not None:
            return cached
        ids = self._allowed_ids(state)
        self._has_text[state] = bool(ids.size)
        if self.is_accepting(state):
            ids = np.append(ids, self._tv.eos_token_id)
        packed = pack_ids(ids, self._tv.size)
        cached = (packed, torch.from_numpy(packed))
        self._rows[state] = cached
        return cached

    def forced_bytes(self, state: int) -> bytes:
        """Bytes every continuation from `state` starts with (cached; see jump_forward.py)."""
        forced = self._forced.get(state)
        if forced is None:
            forced = compute_forced_bytes(self, state)
            self._forced[state] = forced
        return forced
