"""Grammar constraints inside the engine: compile off the loop, attach matchers, jump forward (the
masks are applied by the sampler).

Grammars compile on the compiler's worker threads; a waiting request is not admitted until its
grammar is ready, so one slow schema never stalls the others. A spec that is refused ends that
request alone with an abort naming the problem (status 400).
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from typing import Any

import numpy as np
import torch

from radixgen.constrained import GrammarCompiler
from radixgen.constrained.schema.json_schema import NO_LIMITS, JsonOptions
from radixgen.constrained.mask import pack_ids
from radixgen.constrained.tag_grammar import TagCompiler

from .config import EngineConfig
from .request import Req

log = logging.getLogger("radixgen")
STOP_ROW_CACHE = 64  # stop-string tuples whose token rows are kept


class Constraints:
    def __init__(self, tokenizer: Any, config: EngineConfig):
        self.tokenizer, self.config = tokenizer, config
        self._compiler: GrammarCompiler | None = None  # built on first use: the vocabulary scan costs
        self._tags: TagCompiler | None = None  # structural tags, their parts compiled by _compiler
        self._lock = threading.RLock()  # the server's thread may ask for a compile too (submit_spec)
        self._stop_rows: dict[tuple[str, ...], torch.Tensor] = {}

    @property
    def compiler(self) -> GrammarCompiler:
        with self._lock:
            return self._make_compiler()

    def _make_compiler(self) -> GrammarCompiler:
        if self._compiler is None:
            self._compiler = GrammarCompiler(self.tokenizer, self.config.grammar_cache_size,
                                             self.config.grammar_compile_timeout_s,
                                             sandbox_memory_mb=self.config.grammar_compile_memory_mb or None,
                                             json_limits=JsonOptions() if self.config.grammar_json_finishing
                                             else NO_LIMITS)
        return self._compiler

    def close(self) -> None:
        """Stop the compiler's threads and sandbox processes (the engine is shutting down)."""
        if self._compiler is not None:
            self._compiler.shutdown()

    def submit(self, req: Req) -> None:
        req.grammar_future = self.submit_spec(*req.params.grammar)

    def submit_spec(self, kind: str, spec: Any) -> "Future[Any]":
        """Compile (kind, spec) on the compiler's threads -> a future grammar (cached for the next
        asker). Thread-safe: the server checks a spec with it before the request is made."""
        if kind != "structural_tag":
            return self.compiler.submit(kind, spec)
        with self._lock:
            if self._tags is None:
                self._tags = TagCompiler(self.compiler.submit, self.compiler.token_vocab)
        return self._tags.submit(spec)

    def resolve(self, req: Req) -> str | None:
        """For a request whose compile finished: attach its matcher; returns an error message instead
        if the spec was refused."""
        future, req.grammar_future = req.grammar_future, None
        try:
            req.grammar = future.result().new_matcher()
        except ValueError as exc:
            return f"invalid {req.params.grammar[0]}: {exc}"
        if req.params.stop:
            req.grammar.allow_stops(self._stop_row(tuple(req.params.stop)))
        return None

    def _stop_row(self, stops: tuple[str, ...]) -> torch.Tensor:
        """int32 [W] packed row of the tokens that start with one of `stops` (cached per tuple)."""
        row = self._stop_rows.get(stops)
        if row is None:
            tv = self.compiler.token_vocab
            ids = np.concatenate([tv.ids_starting_with(s.encode()) for s in stops])
            row = torch.from_numpy(pack_ids(ids, tv.size))
            if len(self._stop_rows) >= STOP_ROW_CACHE:
                self._stop_rows.pop(next(iter(self._stop_rows)))
            self._stop_rows[stops] = row
        return row

    def forced_tokens(self, req: Req) -> list[int]:
        """Jump-forward: the tokens of the text the grammar forces from here, already accepted by the
        matcher (empty if nothing is forced or the jump would break a limit). Tokenized on its own:
        the characters are exactly the forced text, whatever BPE would have merged across the seam."""
        if not self.config.enable_jump_forward or req.params.return_logprob:
            return []
        text = req.grammar.forced_string()
        if not text:
            return []
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        room = req.params.max_new_tokens - len(req.output_ids) - 1  # leave a step for the model
        if not ids or len(ids) > room or not req.grammar.advance_tokens(ids):
            return []
        return ids
