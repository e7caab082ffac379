"""What every grammar offers matchers and the engine, and the per-state caches they share.

A grammar is a regex compiled against a TokenVocab. Its states are ints, which a matcher stacks
and rolls back. Two kinds exist: CompiledGrammar (grammar.py) reads allowed tokens from an
outlines-core index precomputed for the whole vocabulary, LazyGrammar (lazy_grammar.py) computes
them on first use from a byte-level automaton. Subclasses say which real tokens a state allows,
whether it accepts, where a token leads; this class turns that into packed mask rows and forced
text, each cached at most once per state, so any number of matchers (requests) can share one
grammar. Each kind's module builds the matcher its grammar needs (new_matcher; matcher.py).

Jump-forward, forced text: what every continuation of a state starts with, computed on the
tokens themselves rather than on a second (character-level) automaton. The next byte is forced
when all tokens allowed in a state begin with the same byte (the grammar's `first_bytes`: read
off the mask row here, or off the byte-level automaton by LazyGrammar); the state then steps
through that byte's single-byte token, which byte-level BPE and SentencePiece byte fallback both
have for every byte. This stays exact for the tokens the model can actually write, costs one
pass over a mask row per state (cached), and never re-parses the regex, which interegular would
do in Python at the cost of seconds for large JSON schemas.
"""
from __future__ import annotations

import codecs
from typing import Any

import numpy as np
import torch

from .json_close import Limits
from .mask import pack_ids
from .vocab import TokenVocab

MAX_FORCED_BYTES = 4096  # a bound for safety; forced runs are keys and punctuation in practice


class Grammar:
    """The interface and caches; `initial_state` is set by the subclass."""

    initial_state: int

    def __init__(self, tv: TokenVocab, marker: bytes, regex: str, compile_s: float = 0.0) -> None:
        self._tv = tv
        self.marker = marker  # the end marker byte (see automata/index.py)
        self.regex = regex
        self.compile_s = compile_s
        self.info: dict[str, int | str] = {}  # how it was built (path, states, narrowing step)
        self._rows: dict[int, tuple[np.ndarray, torch.Tensor]] = {}
        self._has_text: dict[int, bool] = {}
        self._forced: dict[int, bytes] = {}
        self._starting: dict[bytes | str, torch.Tensor] = {}  # starting_row / keeping_row
        # JSON grammars: string bytes / array items after which they must close where they can
        # (json_close.py)
        self.close_limits = Limits()

    def __getstate__(self) -> dict:
        """Pickled (by the compile sandbox) without the vocabulary, which the receiver re-attaches,
        and without the row caches, which refill on use."""
        return {**self.__dict__, "_tv": None, "_rows": {}, "_has_text": {}, "_forced": {},
                "_starting": {}}

    @property
    def vocab_size(self) -> int:
        return self._tv.size

    @property
    def eos_token_id(self) -> int:
        return self._tv.eos_token_id

    @property
    def token_vocab(self) -> TokenVocab:
        return self._tv

    def new_matcher(self) -> Any:
        """A fresh per-request matcher (a matcher.GrammarMatcher or one of its kind's)."""
        raise NotImplementedError

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

    def starting_row(self, prefix: bytes) -> torch.Tensor:
        """Packed int32 [W] row of the real tokens whose bytes start with `prefix` (cached)."""
        row = self._starting.get(prefix)
        if row is None:
            row = torch.from_numpy(pack_ids(self._tv.ids_starting_with(prefix), self._tv.size))
            self._starting[prefix] = row
        return row

    def keeping_row(self, kind: str) -> torch.Tensor:
        """Packed int32 [W] row of the real tokens that keep json_close limit `kind` (cached;
        "blank": the tokens that are whitespace alone). The token sets are the vocabulary's."""
        row = self._starting.get(kind)
        if row is None:
            tv = self._tv
            if kind == "blank":
                row = torch.from_numpy(pack_ids(tv.blank_ids, tv.size))
            elif kind.startswith("depth"):
                opening = tv.container_opening_ids[kind == "depth in string"]
                row = ~torch.from_numpy(pack_ids(opening, tv.size))
            else:
                row = self.starting_row(b'"' if kind == "string" else b"]")
            self._starting[kind] = row
        return row

    def forced_bytes(self, state: int) -> bytes:
        """Bytes every continuation from `state` starts with (cached; see the module docstring)."""
        forced = self._forced.get(state)
        if forced is None:
            forced = compute_forced_bytes(self, state)
            self._forced[state] = forced
        return forced


def mask_first_bytes(grammar: Grammar, state: int) -> np.ndarray:
    """Distinct first bytes of the real tokens allowed in `state`, read off its mask row."""
    row = grammar.row(state)
    bits = np.unpackbits(row.view(np.uint8), bitorder="little")[: grammar.vocab_size].astype(bool)
    bits[grammar.eos_token_id] = False
    firsts = grammar.token_vocab.first_byte[bits]
    return np.unique(firsts[firsts >= 0])


def compute_forced_bytes(grammar: Grammar, state: int) -> bytes:
    """Longest byte string forced from `state`, cut to whole UTF-8 characters.

    Stops where the text could end (accepting state), where two bytes are possible, or where the
    forced byte has no single-byte token to step by.
    """
    out = bytearray()
    if grammar.token_vocab.first_byte.size == 0:
        return b""
    while len(out) < MAX_FORCED_BYTES and not grammar.is_accepting(state):
        firsts = grammar.first_bytes(state)
        if firsts.size != 1:
            break
        byte = int(firsts[0])
        tok = int(grammar.token_vocab.byte_token[byte])
        nxt = grammar.next_state(state, tok) if tok >= 0 else None
        if nxt is None:
            break
        out.append(byte)
        state = nxt
    return _whole_chars(bytes(out))


def _whole_chars(data: bytes) -> bytes:
    """The longest prefix of `data` made of complete UTF-8 characters; empty if `data` starts
    inside a character (the previous token ended mid-character)."""
    if data and 0x80 <= data[0] < 0xC0:
        return b""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    try:
        text = decoder.decode(data, final=False)
    except UnicodeDecodeError:
        return b""
    return text.encode("utf-8")
