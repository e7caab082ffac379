"""uniqueItems, enforced by the matcher: no item of a uniqueItems array may repeat an earlier one.

Distinct items are not a regular language, so the grammar (slot_automaton.py) only marks where
such arrays open; UniqueMatcher follows the text it accepts, keeps each marked array's items,
and takes out of the mask every token that would finish an item equal to an earlier one.

An item is finished by its last byte when it is a string, array, object or literal, and by the
`,` or `]` after it when it is a number. With the current item's text so far `s` and an earlier
item `e` that starts with `s`, the tokens that finish `e` again are exactly those whose bytes
start with `e[len(s):]` (plus `,` or `]` for a number): one slice of the vocabulary sorted by
bytes (TokenVocab.by_bytes). A token can also close the current item and write a whole next
one (`,"a"`), so those prefixes are taken out too; and so are the tokens after which the
grammar forces the rest of a repeat (`nul` when null was written: only `l` may follow).

Items are compared as text, which is what the grammar writes for strings and simple values;
values JSON calls equal but spelled differently (1 and 1.0, "\\u0041" and "A", objects with
their keys reordered or spaced differently) are not caught. Where every token the grammar
allows would repeat an item (an item schema with few values, all used), the mask falls back to
the grammar's own row rather than leave the request no token at all (a repeat, then).
"""
from __future__ import annotations

import re
from bisect import bisect_left
from typing import Iterable, NamedTuple

import numpy as np
import torch

from .automata.slot_automaton import SlotAutomaton
from .grammar_base import Grammar
from .mask import pack_ids
from .matcher import EOS_TAKEN, GrammarMatcher
from .vocab import JSON_WS


_SELF_ENDING = frozenset(b'"[{tfn')  # first bytes of items whose last byte ends them


class Frame(NamedTuple):
    """An open array or object: `unique` arrays keep their finished items and where the
    current one starts in the matcher's text."""
    bracket: int
    unique: bool
    items: tuple[bytes, ...]
    start: int


class Scan(NamedTuple):
    """Where the text stands after a token: open containers, inside a string or an escape."""
    frames: tuple[Frame, ...] = ()
    in_string: bool = False
    escaped: bool = False


class UniqueMatcher(GrammarMatcher):
    """A GrammarMatcher over a grammar (a LazyGrammar) whose `automaton` marks uniqueItems arrays."""

    def __init__(self, grammar: Grammar, automaton: SlotAutomaton) -> None:
        super().__init__(grammar)
        self._auto = automaton
        self._text = bytearray()
        self._scans: list[Scan] = [Scan()]  # after each accepted token, like the state stack
        self._sizes: list[int] = []  # bytes each accepted token added
        # (num_tokens, forbidden ids, the grammar's row without them or None): one step's cache
        self._forbidden: tuple[int, np.ndarray, np.ndarray | None] | None = None
        self._ws = _whitespace_variants(automaton.whitespace, grammar.token_vocab.whitespace_runs)
        self._longest = grammar.token_vocab.matrix.columns.shape[0]  # bytes of the longest token

    # ---- the state, kept in step with the base class's ------------------------------------

    def advance(self, token_id: int) -> bool:
        if self.state != EOS_TAKEN and token_id in self._forbidden_ids():
            return False
        state = self.state
        if not super().advance(token_id):
            return False
        pieces = self.grammar.token_vocab.matrix.pieces
        piece = b"" if token_id == self.grammar.eos_token_id else pieces[token_id] or b""
        self._scans.append(self._scan(self._scans[-1], state, piece))
        self._sizes.append(len(piece))
        return True

    def rollback(self, n: int) -> None:
        super().rollback(n)
        self._forbidden = None  # the next token may differ from the one rolled back
        if n:
            del self._text[len(self._text) - sum(self._sizes[-n:]):]
            del self._scans[-n:], self._sizes[-n:]

    def reset(self) -> None:
        self.rollback(self.num_tokens)

    def is_allowed(self, token_id: int) -> bool:
        return super().is_allowed(token_id) and (self.state == EOS_TAKEN
                                                 or token_id not in self._forbidden_ids())

    def _scan(self, scan: Scan, state: int, piece: bytes) -> Scan:
        frames, in_string, escaped = scan
        for b in piece:
            pos = len(self._text)
            self._text.append(b)
            if escaped:
                escaped = False
            elif in_string:
                escaped, in_string = b == 0x5C, b != 0x22
            elif b == 0x22:
                in_string = True
            elif b in (0x5B, 0x7B):
                frames += (Frame(b, b == 0x5B and self._auto.opens_unique(state, b), (), pos + 1),)
            elif b in (0x5D, 0x7D):
                frames = frames[:-1]
            elif b == 0x2C and frames and frames[-1].unique:
                top = frames[-1]
                item = bytes(self._text[top.start:pos]).lstrip(JSON_WS)
                frames = frames[:-1] + (top._replace(items=top.items + (item,), start=pos + 1),)
            state = self._auto.step(state, b)
        return Scan(frames, in_string, escaped)

    # ---- masks -----------------------------------------------------------------------------

    def _row_tensor(self) -> torch.Tensor:
        row = super()._row_tensor()
        if self.state == EOS_TAKEN:
            return row
        self._forbidden_ids()
        kept = self._forbidden[2]  # type: ignore[index]
        return row if kept is None else torch.from_numpy(kept)

    def forced_string(self) -> str | None:
        text = super().forced_string()
        if text and any(text.encode().startswith(p) for p in self._prefixes()):
            return None  # jumping would write a repeated item; decode token by token instead
        return text

    def _forbidden_ids(self) -> np.ndarray:
        """int64 ids of the tokens that would finish a repeated item here, or lead where the
        grammar forces the rest of one (cached per step). Empty when they are all the grammar
        allows: then its own row stands, rather than none (see the module doc)."""
        if self._forbidden is None or self._forbidden[0] != self.num_tokens:
            keys, ids = self.grammar.token_vocab.by_bytes
            prefixes = self._prefixes()
            found = [ids[bisect_left(keys, p):_prefix_end(keys, p)] for p in prefixes]
            found += [self._forced_into(keys, ids, p) for p in prefixes]
            forbidden = np.unique(np.concatenate(found)) if found else ids[:0]
            kept = None
            if forbidden.size:
                kept = super()._row_tensor().numpy() & ~pack_ids(forbidden, self.grammar.vocab_size)
                if not kept.any():
                    forbidden, kept = ids[:0], None
            self._forbidden = (self.num_tokens, forbidden, kept)
        return self._forbidden[1]

    def _forced_into(self, keys: list[bytes], ids: np.ndarray, finish: bytes) -> np.ndarray:
        """Tokens spelling a proper prefix of `finish` after which the grammar forces the rest
        of it (a literal like `nul`, an enum value like `"al` -> `pha"`): the jump-forward text,
        or the only tokens left, would then repeat the item."""
        out = []
        for k in range(1, min(len(finish), self._longest + 1)):
            head = finish[:k]
            lo = bisect_left(keys, head)
            for i in range(lo, len(keys)):
                if keys[i] != head:
                    break
                nxt = self.grammar.next_state(self.state, int(ids[i]))
                if nxt is not None and (head + self.grammar.forced_bytes(nxt)).startswith(finish):
                    out.append(int(ids[i]))
        return np.array(out, dtype=np.int64)

    def _prefixes(self) -> list[bytes]:
        """Byte prefixes of the tokens that would finish a repeated item (see module doc)."""
        out: list[bytes] = []
        for frame in self._scans[-1].frames:
            if not frame.unique or (not frame.items and frame.start == len(self._text)):
                continue
            s = bytes(self._text[frame.start:]).lstrip(JSON_WS)
            lead = [b""] if s else self._ws  # an item not begun may start after whitespace
            for e in frame.items:
                if e.startswith(s) and (e != s or not _self_ending(e)):
                    out += [w + e[len(s):] + end for w in lead for end in _enders(e)]
            if s:  # close this item and write a whole repeated one in the same token
                out += [b"," + w + e + end for e in (*frame.items, s) for w in self._ws
                        for end in _enders(e)]
        return out


def _self_ending(item: bytes) -> bool:
    return item[:1] and item[0] in _SELF_ENDING  # type: ignore[return-value]


def _enders(item: bytes) -> tuple[bytes, ...]:
    return (b"",) if _self_ending(item) else (b",", b"]")


def _prefix_end(keys: list[bytes], prefix: bytes) -> int:
    """Index past the last key starting with `prefix` in sorted `keys`."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return len(keys)
    return bisect_left(keys, stripped[:-1] + bytes([stripped[-1] + 1]))


def _whitespace_variants(pattern: str, runs: Iterable[bytes]) -> list[bytes]:
    """The whitespace `pattern` (the grammar's, after `,`) allows, as the vocabulary spells it
    (`runs`: leading whitespace runs of tokens), the empty run first."""
    return [b""] + sorted(w for w in runs if re.fullmatch(pattern, w.decode()))
