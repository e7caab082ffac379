"""A structural tag compiled against a vocabulary: its parts as ordinary grammars, and free-text masks.

A TagFormat (structural_tag.py) is decoded as a sequence of phases, each served by a grammar the
GrammarCompiler already builds and caches:

    free text --trigger--> opener (choices: the rest of the begins) -> content (json_schema)
              -> end (choices: [end]) -> free text again (or the next opener, or the end)

Phases meet at token boundaries: a token never straddles a marker. In free text that is what the
free-text masks enforce (a token that would complete a trigger before its last byte is masked),
between the other phases it follows from each phase's own grammar. The per-request state is
tag_matcher.TagMatcher; this object is shared by every request with the same spec.
"""
from __future__ import annotations

import json
import threading
from collections import OrderedDict
from concurrent.futures import Future
from typing import Any, Callable

import numpy as np
import torch

from .grammar_base import Grammar
from .mask import pack_ids, row_has
from .structural_tag import TagFormat, parse_structural_tag
from .tag_matcher import Opener, TagMatcher
from .vocab import TokenVocab

TAG_CACHE_SIZE = 32


class TagGrammar:
    """Shared, immutable once built (the free-text rows are a cache). `openers` is keyed by trigger
    in free-text formats, by "first" / "next" (separator first) in tags_with_separator."""

    def __init__(self, fmt: TagFormat, tv: TokenVocab, openers: dict[str, Opener],
                 contents: list[Grammar], ends: list[Grammar | None]) -> None:
        self.format, self.openers, self.contents, self.ends = fmt, openers, contents, ends
        self._tv = tv
        self.triggers = tuple(t.encode() for t in fmt.triggers)
        # proper prefixes of the triggers: the free-text states (how much of a trigger was just written)
        self._prefixes = sorted({t[:n] for t in self.triggers for n in range(len(t))}, key=len, reverse=True)
        self._free_rows: dict[bytes, np.ndarray] = {}
        self._inside: np.ndarray | None = None  # int64 ids of tokens holding a whole trigger before their end
        self._lock = threading.Lock()

    @property
    def vocab_size(self) -> int:
        return self._tv.size

    @property
    def eos_token_id(self) -> int:
        return self._tv.eos_token_id

    def piece(self, token_id: int) -> bytes | None:
        """The token's bytes; None for special tokens (chat markers), which write no text."""
        return self._tv.matrix.pieces[token_id] if 0 <= token_id < self._tv.size else None

    def new_matcher(self) -> TagMatcher:
        return TagMatcher(self)

    def free_step(self, tail: bytes, piece: bytes) -> tuple[str | None, bytes]:
        """Free text `tail` + a token's bytes -> (the trigger just completed or None, the new tail:
        the longest suffix that is a proper prefix of a trigger)."""
        text = tail + piece
        done = [t for t in self.triggers if text.endswith(t)]
        if done:
            return max(done, key=len).decode(), b""
        return None, next((p for p in self._prefixes if text.endswith(p)), b"")

    def free_row(self, tail: bytes) -> torch.Tensor:
        """int32 [W] row of the tokens free text may take after `tail` (EOS not set): all of them
        but those that would complete a trigger before their last byte."""
        return torch.from_numpy(self._free_row(tail))

    def free_allows(self, tail: bytes, token_id: int) -> bool:
        return row_has(self._free_row(tail), token_id)  # numpy: indexing a tensor costs ~0.1 ms

    def _free_row(self, tail: bytes) -> np.ndarray:
        row = self._free_rows.get(tail)
        if row is None:
            with self._lock:
                row = self._free_rows.get(tail)
                if row is None:
                    row = self._free_rows[tail] = self._build_free_row(tail)
        return row

    def _build_free_row(self, tail: bytes) -> np.ndarray:
        """A trigger completed before a token's last byte lies inside the token (the same for every
        tail) or starts in the tail: then the token starts with the trigger's rest."""
        tv = self._tv
        if self._inside is None:
            self._inside = np.array([tid for tid, p in enumerate(tv.matrix.pieces)
                                     if p and any(t in p[:-1] for t in self.triggers)], dtype=np.int64)
        banned = [self._inside]
        for t in self.triggers:
            for j in range(1, len(t)):
                if tail.endswith(t[:j]):
                    ids = tv.ids_starting_with(t[j:])
                    banned.append(np.array([i for i in ids if len(tv.matrix.pieces[i]) > len(t) - j],
                                           dtype=np.int64))
        allowed = np.ones(tv.size, dtype=bool)
        allowed[np.concatenate(banned)] = False
        allowed[tv.eos_token_id] = False
        return pack_ids(np.flatnonzero(allowed), tv.size)


class TagCompiler:
    """Structural tag specs -> Future[TagGrammar], its parts compiled (and cached) by `compile_fn`
    (GrammarCompiler.submit: (kind, spec) -> Future[Grammar]); whole tag grammars cached LRU."""

    def __init__(self, submit: Callable[[str, Any], "Future[Grammar]"], tv: TokenVocab) -> None:
        self._submit, self._tv = submit, tv
        self._cache: OrderedDict[str, Future] = OrderedDict()
        self._lock = threading.Lock()

    def submit(self, spec: Any) -> "Future[TagGrammar]":
        try:
            fmt = parse_structural_tag(spec)
            key = json.dumps(spec if not isinstance(spec, str) else json.loads(spec), sort_keys=True)
        except (ValueError, TypeError) as e:
            out: Future = Future()
            out.set_exception(ValueError(str(e)))
            return out
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and not (hit.done() and hit.exception() is not None):
                self._cache.move_to_end(key)
                return hit
            out = self._cache[key] = self._build(fmt)
            while len(self._cache) > TAG_CACHE_SIZE:
                self._cache.popitem(last=False)
        return out

    def _build(self, fmt: TagFormat) -> "Future[TagGrammar]":
        """Submit every part; the result is assembled when the last one is ready."""
        openers = _opener_texts(fmt)
        parts: dict[str, Future] = {}
        for name, alts in openers.items():
            if list(alts) != [b""]:
                parts[f"opener {name!r}"] = self._submit("choices", [a.decode() for a in alts])
        for i, tag in enumerate(fmt.tags):
            parts[f"tag {i} ({tag.begin!r}) schema"] = self._submit("json_schema", tag.schema)
            if tag.end:
                parts[f"tag {i} end"] = self._submit("choices", [tag.end])
        out: Future = Future()
        pending = [len(parts)]
        lock = threading.Lock()

        def one_done(_: Future) -> None:
            with lock:
                pending[0] -= 1
                if pending[0]:
                    return
            for name, fut in parts.items():
                if fut.exception() is not None:
                    out.set_exception(ValueError(f"structural_tag {name}: {fut.exception()}"))
                    return
            got = {name: fut.result() for name, fut in parts.items()}
            grammar = TagGrammar(
                fmt, self._tv,
                {name: Opener(got.get(f"opener {name!r}"), alts) for name, alts in openers.items()},
                [got[f"tag {i} ({t.begin!r}) schema"] for i, t in enumerate(fmt.tags)],
                [got.get(f"tag {i} end") for i in range(len(fmt.tags))])
            if fmt.free_text:
                grammar.free_allows(b"", 0)  # the vocabulary scan here, on a compile thread, not in a decode step
            out.set_result(grammar)
        for fut in parts.values():
            fut.add_done_callback(one_done)
        return out


def _opener_texts(fmt: TagFormat) -> dict[str, dict[bytes, int]]:
    """What each opener may write (bytes -> tag index)."""
    if fmt.free_text:
        return {trig: {fmt.tags[i].begin[len(trig):].encode(): i for i in fmt.tags_under(trig)}
                for trig in fmt.triggers}
    first = {t.begin.encode(): i for i, t in enumerate(fmt.tags)}
    return {"first": first, "next": {fmt.separator.encode() + b: i for b, i in first.items()}}
