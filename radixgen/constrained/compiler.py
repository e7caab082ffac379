"""Spec -> Grammar, cached (LRU by kind + canonical spec) and compiled off the engine loop.

Regexes (regex_syntax.py) and choices are indexed ahead of time (grammar.CompiledGrammar); EBNF
grammars are rules calling each other on a stack (ebnf.py), masked lazily. A JSON schema gets a
LazyGrammar whose masks are computed per state on first use (lazy_grammar.py), over a
SlotAutomaton where it has free-form values, uniqueItems or called $refs (slot_automaton.py);
only a schema whose regex is too long to build at all in time is narrowed (JSON_LADDER).

outlines-core releases the GIL while it builds an index, so a worker thread keeps the engine's
step loop running during a slow compile. A compile past `timeout_s` fails its future with a
ValueError; the worker cannot be interrupted inside Rust, so it runs on and its result still
lands in the cache for the next request with the same spec.
"""
from __future__ import annotations

import heapq
import itertools
import json
import re
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Hashable

from .automata.byte_automaton import ByteAutomaton
from .automata.json_free import SLOT_REGEX, UNIQUE_REGEX
from .automata.slot_automaton import SlotAutomaton
from .ebnf import compile_ebnf
from .errors import RegexTooLarge
from .grammar import compile_regex
from .json_close import Limits
from .grammar_base import Grammar
from .lazy_grammar import LazyGrammar
from .regex_syntax import compile_python_regex
from .sandbox import START_TIMEOUT_S, Sandbox, too_slow
from .schema.json_schema import FINISHING, MAX_REGEX_CHARS, WHITESPACE, JsonOptions, json_schema_parts
from .schema.json_values import escape
from .vocab import MARKERS, TokenVocab, token_vocab_from_tokenizer

KINDS = ("regex", "json_schema", "choices", "ebnf")
JSON_MARKER = b"\x00"  # JSON text never holds a raw control byte, see automata/index.py
# A JSON schema becomes a regex that marks free-form values (SLOT), uniqueItems arrays (UNIQUE) and
# recursive or long $refs (CALL, each with a regex of its own), read by a SlotAutomaton: free-form
# values at any depth through a pushdown machine (json_free.py), calls up to 32 deep, and items
# the matcher keeps distinct (unique_items.py). Its masks are computed per state on first use
# (LazyGrammar, ~1 ms a state a request visits), never indexed ahead of time: outlines-core's
# index costs ~1 ms for every state of the automaton (a person record's 900 ms, against 20 ms to
# build the lazy grammar), and the request waits for its grammar. What still limits a schema is
# the regex text: regex-automata builds ~1 s per million characters, and a $ref used in many
# places is copied into each unless called. A regex too long for the time left is converted
# again with more narrowing (each step only drops valid texts: recursion unrolled once where the
# CALL bytes ran out, no additional properties beside declared ones, and last only the required
# properties of ever shallower nested objects).
JSON_LADDER = (
    JsonOptions(slots=True, calls=True),
    JsonOptions(slots=True, calls=True, max_recursion=1),
    JsonOptions(slots=True, calls=True, max_recursion=1, additional=False),
    *(JsonOptions(slots=True, calls=True, max_recursion=1, additional=False, optional_depth=depth)
      for depth in (3, 2, 1, 0)),
)


def json_ladder(limits: JsonOptions = JsonOptions()) -> tuple[JsonOptions, ...]:
    """JSON_LADDER with the finishing defaults (FINISHING fields) of `limits` on every step."""
    return tuple(replace(step, **{f: getattr(limits, f) for f in FINISHING}) for step in JSON_LADDER)


SEC_PER_REGEX_CHAR = 1e-6  # regex-automata on the 2-core dev machine; then a running mean
MAX_SPEC_CHARS = 65_536    # a user regex, or all choices together
MAX_REPEAT = 10_000        # the largest {n} / {n,m} count a user regex may use
MAX_CHOICES = 4_096


def canonical_spec(kind: str, spec: Any) -> Hashable:
    """A hashable form of `spec` for the cache key; raises ValueError on malformed specs.

    JSON schemas keep their key order: properties are generated in schema order.
    """
    if kind == "regex":
        if not isinstance(spec, str):
            raise ValueError(f"a regex spec must be a str, got {type(spec).__name__}")
        _check_regex_size(spec)
        return spec
    if kind == "json_schema":
        if isinstance(spec, str):
            try:
                spec = json.loads(spec)
            except json.JSONDecodeError as e:
                raise ValueError(f"json_schema is not valid JSON: {e}") from None
            except RecursionError:
                raise ValueError("json_schema is nested too deeply to parse") from None
        if not isinstance(spec, (dict, bool)):
            raise ValueError(f"a JSON schema must be an object, got {type(spec).__name__}")
        try:
            return json.dumps(spec, separators=(",", ":"), ensure_ascii=False)
        except RecursionError:
            raise ValueError("json_schema is nested too deeply") from None
    if kind == "ebnf":
        if not isinstance(spec, str):
            raise ValueError(f"an EBNF grammar must be a str, got {type(spec).__name__}")
        if len(spec) > MAX_SPEC_CHARS:
            raise ValueError(f"the grammar has {len(spec):,} characters, over the limit of {MAX_SPEC_CHARS:,}")
        return spec
    if kind == "choices":
        if isinstance(spec, str) or not all(isinstance(c, str) for c in spec) or not spec:
            raise ValueError("choices must be a non-empty list of strings")
        if len(spec) > MAX_CHOICES or sum(map(len, spec)) > MAX_SPEC_CHARS:
            raise ValueError(f"choices take at most {MAX_CHOICES} strings of {MAX_SPEC_CHARS} characters in all")
        return tuple(spec)
    raise ValueError(f"unknown grammar kind {kind!r}; expected one of {KINDS}")


def _check_regex_size(regex: str) -> None:
    """Caps checked before any compile: the regex's length and its counted repetitions ({n} and
    {n,m} nest multiplicatively in the automaton; the sandbox bounds what gets past these)."""
    if len(regex) > MAX_SPEC_CHARS:
        raise ValueError(f"the regex has {len(regex):,} characters, over the limit of {MAX_SPEC_CHARS:,}")
    pairs = re.findall(r"(?<!\\)\{\s*(\d+)\s*(?:,\s*(\d*)\s*)?\}", regex)  # (n, m) of {n} / {n,m}
    counts = [int(n) for pair in pairs for n in pair if n]
    if counts and max(counts) > MAX_REPEAT:
        raise ValueError(f"the regex repeats something {max(counts):,} times, over the limit of {MAX_REPEAT:,}")


def choices_regex(choices: tuple[str, ...]) -> str:
    alternatives = "|".join(escape(c) for c in choices if c)
    return f"(?:{alternatives})?" if not all(choices) else alternatives


class GrammarCompiler:
    """Compiles grammar specs against one tokenizer's vocabulary (built once, here).

    tokenizer: a transformers tokenizer (or a prebuilt TokenVocab); cache_size: LRU entries;
    timeout_s: a compile that runs longer fails its future; whitespace: the pattern JSON allows
    after `,` and `:`; max_workers: compile threads; sandbox_memory_mb: compile each spec first in
    a child process killed at timeout_s and capped at this much memory (sandbox.py), else None;
    json_limits: the finishing defaults of JSON schemas (JsonOptions' FINISHING fields: digit
    limits, string and array caps, undeclared keys; its other fields are ignored),
    json_schema.NO_LIMITS to turn them off.
    """

    def __init__(self, tokenizer: Any, cache_size: int = 128, timeout_s: float = 10.0,
                 whitespace: str = WHITESPACE, max_workers: int = 2, sandbox_memory_mb: int | None = None,
                 json_limits: JsonOptions = JsonOptions()) -> None:
        tv = tokenizer if isinstance(tokenizer, TokenVocab) else token_vocab_from_tokenizer(tokenizer)
        self.token_vocab = tv
        self.cache_size = cache_size
        self.timeout_s = timeout_s
        self.whitespace = whitespace
        self.json_limits = json_limits
        self._ladder = json_ladder(json_limits)
        self._sec_per_char = SEC_PER_REGEX_CHAR
        self._cache: OrderedDict[tuple[str, Hashable], Grammar] = OrderedDict()
        self._pending: dict[tuple[str, Hashable], Future[Grammar]] = {}
        self._lock = threading.RLock()  # a done-callback may run at once, inside submit()
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grammar")
        self._deadlines: dict[tuple[str, Hashable], float] = {}
        self._watchdog = _Watchdog()  # one thread for every deadline (a timer thread each grew without bound)
        # with a memory cap, every spec is first compiled in a child process (see sandbox.py)
        self._sandbox = None if sandbox_memory_mb is None else Sandbox(tv, whitespace, sandbox_memory_mb, 1, timeout_s,
                                                                     json_limits)

    @property
    def vocab_size(self) -> int:
        return self.token_vocab.size

    def compile(self, kind: str, spec: Any) -> Grammar:
        """Compile (or fetch from the cache), blocking; errors are ValueError."""
        return self.submit(kind, spec).result()

    def submit(self, kind: str, spec: Any) -> "Future[Grammar]":
        """Compile on a worker thread; the future fails with ValueError on a bad spec or when
        compiling takes longer than `timeout_s`."""
        out: Future[Grammar] = Future()
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
                self._deadlines[key] = self._deadline()  # the first asker's
                work = self._pool.submit(self._run, key)
                self._pending[key] = work
                work.add_done_callback(lambda f, k=key: self._finish(k, f))
        self._relay(key, work, out)
        return out

    def _deadline(self) -> float:
        """timeout_s from now; from when the sandbox is up if it is still starting (a one-time wait
        of a few seconds that is not the spec's doing: START_TIMEOUT_S at most)."""
        start = time.monotonic()
        if self._sandbox is not None and not self._sandbox.ready.is_set():
            start += START_TIMEOUT_S
        return start + self.timeout_s

    def _relay(self, key: tuple[str, Hashable], work: "Future[Grammar]",
               out: "Future[Grammar]") -> None:
        """Complete `out` from `work`, or fail it `timeout_s` after it was submitted (time spent
        queued behind other compiles counts: it is time the request waits)."""
        def done(f: "Future[Grammar]") -> None:
            error = ValueError("the grammar compiler was shut down") if f.cancelled() else f.exception()
            _settle(out, result=None if error else f.result(), error=error)
        self._watchdog.watch(self._deadline(), out, self.timeout_s)
        work.add_done_callback(done)

    def _finish(self, key: tuple[str, Hashable], work: "Future[Grammar]") -> None:
        with self._lock:
            self._pending.pop(key, None)
            if not work.cancelled() and work.exception() is None:
                self._cache[key] = work.result()
                self._cache.move_to_end(key)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)

    def _run(self, key: tuple[str, Hashable]) -> Grammar:
        deadline = self._deadlines.pop(key, 0.0)
        if self._sandbox is not None and deadline - time.monotonic() > self.timeout_s:  # asked while starting
            self._sandbox.ready.wait(START_TIMEOUT_S)
            deadline = time.monotonic() + self.timeout_s
        try:
            if self._sandbox is not None:  # killed at the first asker's deadline, as its future fails
                grammar = self._sandbox.run(key, deadline, self.timeout_s)
                if grammar is not None:
                    return grammar
            return self.compile_uncached(key)
        except ValueError:
            raise
        except Exception as e:  # a bug of ours, met by one spec: that request fails, not the engine
            raise ValueError(f"the grammar compiler failed on this {key[0]} ({type(e).__name__}: {e}); "
                             "please report it with the spec") from e

    def compile_uncached(self, key: tuple[str, Hashable]) -> Grammar:
        kind, spec = key
        if kind == "regex":
            return compile_python_regex(spec, self.token_vocab)
        if kind == "json_schema":
            return self._compile_json(json.loads(spec))
        if kind == "ebnf":
            return compile_ebnf(spec, self.token_vocab)
        # a marker byte no choice contains is one the regex cannot produce
        marker = next((m for m in MARKERS if all(m.decode() not in c for c in spec)), None)
        return compile_regex(choices_regex(spec), self.token_vocab, marker=marker)

    def _regex_fits(self, chars: int, elapsed: float) -> bool:
        """Whether regex-automata can build `chars` of regex text in half of what is left of
        timeout_s."""
        return chars * self._sec_per_char <= 0.5 * self.timeout_s - elapsed

    def _compile_json(self, schema: Any) -> Grammar:
        """A LazyGrammar for the first JSON_LADDER step whose regex fits the time left (step 0
        for every dev schema): over a SlotAutomaton if the regex has free-form values,
        uniqueItems or calls, else over the plain regex's ByteAutomaton."""
        start = time.perf_counter()
        step, regex, calls = self._slot_regex(schema, start)
        built = time.perf_counter()
        if calls or SLOT_REGEX in regex or UNIQUE_REGEX in regex:
            automaton = SlotAutomaton(regex, JSON_MARKER, self.whitespace, calls,
                                      self._ladder[step].number_limits)
        else:
            automaton = ByteAutomaton(regex, JSON_MARKER)
        chars = _chars(regex, calls)
        if chars >= 100_000:  # regex-automata's speed, for _regex_fits (short ones time fixed costs)
            self._sec_per_char = 0.8 * self._sec_per_char + 0.2 * (time.perf_counter() - built) / chars
        grammar = LazyGrammar(automaton, self.token_vocab, JSON_MARKER, regex)
        lim = self.json_limits
        grammar.close_limits = Limits(lim.close_strings_at, lim.close_arrays_at, lim.close_depth_at)
        grammar.compile_s = time.perf_counter() - start
        grammar.info.update(path="lazy", narrowing_step=step, calls=len(calls), regex_chars=chars)
        return grammar

    def _slot_regex(self, schema: Any, start: float) -> tuple[int, str, dict[int, str | None]]:
        regex = ""
        for step, options in enumerate(self._ladder):
            try:
                regex, calls = json_schema_parts(schema, self.whitespace, options)
            except RegexTooLarge:
                continue
            if self._regex_fits(_chars(regex, calls), time.perf_counter() - start):
                return step, regex, calls
        size = f"{len(regex):,} characters" if regex else f"over {MAX_REGEX_CHARS:,} characters"
        raise ValueError(f"the schema is too large to compile in {self.timeout_s:g} s even narrowed "
                         f"(a regex of {size}); simplify the schema or raise timeout_s")

    def cache_info(self) -> dict[str, int]:
        with self._lock:
            return {"size": len(self._cache), "pending": len(self._pending), "max": self.cache_size}

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._watchdog.stop()
        if self._sandbox is not None:
            self._sandbox.shutdown()


class _Watchdog:
    """Fails futures still pending at their deadline, from one daemon thread started on first use."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Future, float]] = []
        self._wake = threading.Condition()
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def watch(self, deadline: float, fut: Future, limit_s: float) -> None:
        with self._wake:
            heapq.heappush(self._heap, (deadline, next(self._ids), fut, limit_s))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="grammar-deadlines", daemon=True)
                self._thread.start()
            self._wake.notify()

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()

    def _run(self) -> None:
        with self._wake:
            while not self._stopped:
                now = time.monotonic()
                while self._heap and (self._heap[0][2].done() or self._heap[0][0] <= now):
                    _, _, fut, limit_s = heapq.heappop(self._heap)
                    _settle(fut, error=ValueError(too_slow(limit_s)))
                self._wake.wait(None if not self._heap else self._heap[0][0] - now)


def _chars(regex: str, calls: dict[int, str | None]) -> int:
    return len(regex) + sum(len(rx or "") for rx in calls.values())


def _settle(fut: "Future[Grammar]", result: Grammar | None = None,
            error: BaseException | None = None) -> None:
    """Set a future's outcome once; later attempts (timer vs worker race) are ignored."""
    try:
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(result)  # type: ignore[arg-type]
    except InvalidStateError:  # the timer and the worker raced; the first one won
        return

