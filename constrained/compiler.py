"""Spec -> CompiledGrammar, cached (LRU by kind + canonical spec) and compiled off the engine loop.

outlines-core releases the GIL while it builds an index, so a worker thread keeps the engine's
step loop running during a slow compile. A compile past `timeout_s` fails its future with a
ValueError; the worker cannot be interrupted inside Rust, so it runs on and its result still
lands in the cache for the next request with the same spec.
"""
from __future__ import annotations

import json
import threading
from collections import OrderedDict
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from typing import Any, Hashable

from .grammar import CompiledGrammar, compile_regex
from .json_schema import WHITESPACE, json_schema_to_regex
from .json_values import escape
from .vocab import MARKERS, TokenVocab, token_vocab_from_tokenizer

KINDS = ("regex", "json_schema", "choices")
JSON_MARKER = b"\x00"  # JSON text never holds a raw control byte, see grammar.py


def canonical_spec(kind: str, spec: Any) -> Hashable:
    """A hashable form of `spec` for the cache key; raises ValueError on malformed specs.

    JSON schemas keep their key order: properties are generated in schema order.
    """
    if kind == "regex":
        if not isinstance(spec, str):
            raise ValueError(f"a regex spec must be a str, got {type(spec).__name__}")
        return spec
    if kind == "json_schema":
        if isinstance(spec, str):
            try:
                spec = json.loads(spec)
            except json.JSONDecodeError as e:
                raise ValueError(f"json_schema is not valid JSON: {e}") from None
        if not isinstance(spec, (dict, bool)):
            raise ValueError(f"a JSON schema must be an object, got {type(spec).__name__}")
        return json.dumps(spec, separators=(",", ":"), ensure_ascii=False)
    if kind == "choices":
        if isinstance(spec, str) or not all(isinstance(c, str) for c in spec) or not spec:
            raise ValueError("choices must be a non-empty list of strings")
        return tuple(spec)
    raise ValueError(f"unknown grammar kind {kind!r}; expected one of {KINDS}")


def choices_regex(choices: tuple[str, ...]) -> str:
    alternatives = "|".join(escape(c) for c in choices if c)
    return f"(?:{alternatives})?" if not all(choices) else alternatives


class GrammarCompiler:
    """Compiles grammar specs against one tokenizer's vocabulary (built once, here)."""

    def __init__(self, tokenizer: Any, cache_size: int = 128, timeout_s: float = 10.0,
                 whitespace: str = WHITESPACE, max_workers: int = 2) -> None:
        tv = tokenizer if isinstance(tokenizer, TokenVocab) else token_vocab_from_tokenizer(tokenizer)
        self.token_vocab = tv
        self.cache_size = cache_size
        self.timeout_s = timeout_s
        self.whitespace = whitespace
        self._cache: OrderedDict[tuple[str, Hashable], CompiledGrammar] = OrderedDict()
        self._pending: dict[tuple[str, Hashable], Future[CompiledGrammar]] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grammar")

    @property
    def vocab_size(self) -> int:
        return self.token_vocab.size

    def compile(self, kind: str, spec: Any) -> CompiledGrammar:
        """Compile (or fetch from the cache), blocking; errors are ValueError."""
        return self.submit(kind, spec).result()

    def submit(self, kind: str, spec: Any) -> "Future[CompiledGrammar]":
        """Compile on a worker thread; the future fails with ValueError on a bad spec or when
        compiling takes longer than `timeout_s`."""
        out: Future[CompiledGrammar] = Future()
        try:
            key = (kind, canonical_spec(kind, spec))
        except ValueError as e:
            out.set_exception(e)
            return out
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                out.set_result(hit)
                return out
            work = self._pending.get(key)
            if work is None:
                work = self._pool.submit(self._compile_uncached, key)
                self._pending[key] = work
                work.add_done_callback(lambda f, k=key: self._finish(k, f))
        self._relay(work, out)
        return out

    def _relay(self, work: "Future[CompiledGrammar]", out: "Future[CompiledGrammar]") -> None:
        """Complete `out` from `work`, or with a timeout error if `work` takes too long."""
        def expire() -> None:
            _settle(out, error=ValueError(f"grammar compilation exceeded {self.timeout_s:g} s; "
                                          "simplify the spec or raise timeout_s"))
        timer = threading.Timer(self.timeout_s, expire)
        timer.daemon = True

        def done(f: "Future[CompiledGrammar]") -> None:
            timer.cancel()
            error = f.exception()
            _settle(out, result=None if error else f.result(), error=error)
        timer.start()
        work.add_done_callback(done)

    def _finish(self, key: tuple[str, Hashable], work: "Future[CompiledGrammar]") -> None:
        with self._lock:
            self._pending.pop(key, None)
            if work.exception() is None:
                self._cache[key] = work.result()
                self._cache.move_to_end(key)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)

    def _compile_uncached(self, key: tuple[str, Hashable]) -> CompiledGrammar:
        kind, spec = key
        if kind == "regex":
            return compile_regex(spec, self.token_vocab)
        if kind == "json_schema":
            regex = json_schema_to_regex(json.loads(spec), whitespace=self.whitespace)
            return compile_regex(regex, self.token_vocab, marker=JSON_MARKER)
        # a marker byte no choice contains is one the regex cannot produce
        marker = next((m for m in MARKERS if all(m.decode() not in c for c in spec)), None)
        return compile_regex(choices_regex(spec), self.token_vocab, marker=marker)

    def cache_info(self) -> dict[str, int]:
        with self._lock:
            return {"size": len(self._cache), "pending": len(self._pending), "max": self.cache_size}

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _settle(fut: "Future[CompiledGrammar]", result: CompiledGrammar | None = None,
            error: BaseException | None = None) -> None:
    """Set a future's outcome once; later attempts (timer vs worker race) are ignored."""
    try:
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(result)  # type: ignore[arg-type]
    except InvalidStateError:  # the timer and the worker raced; the first one won
        return
