"""GrammarCompiler: the LRU cache, compiling on a worker thread, the time limit, bad specs."""
from __future__ import annotations

import threading
import time

import pytest

from radixgen.constrained import GrammarCompiler, UnsupportedSchemaError, canonical_spec

from constrained_helpers import tiny_vocab

VOCAB = tiny_vocab(list("abcdefghij0123456789{}[]\":, -.tfrunl"))


@pytest.fixture
def compiler():
    c = GrammarCompiler(VOCAB, cache_size=2, timeout_s=5.0)
    yield c
    c.shutdown()


def test_cache_hits_and_lru_eviction(compiler):
    a = compiler.compile("regex", "ab+")
    assert compiler.compile("regex", "ab+") is a
    b = compiler.compile("choices", ["a", "b"])
    compiler.compile("regex", "ab+")  # a is now the most recent
    compiler.compile("regex", "c")    # evicts b
    assert compiler.compile("regex", "ab+") is a
    assert compiler.compile("choices", ["a", "b"]) is not b
    assert compiler.cache_info()["size"] == 2


def test_json_schema_key_is_canonical(compiler):
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": False}
    g = compiler.compile("json_schema", schema)
    assert compiler.compile("json_schema", '{"type":"object", "properties": {"a": {"type": "integer"}},'
                                           ' "additionalProperties": false}') is g


def test_submit_runs_off_the_calling_thread(compiler, monkeypatch):
    seen = []
    original = compiler.compile_uncached

    def spy(key):
        seen.append(threading.current_thread().name)
        return original(key)
    monkeypatch.setattr(compiler, "compile_uncached", spy)
    future = compiler.submit("regex", "abc")
    assert future.result(timeout=5).vocab_size == VOCAB.size
    assert seen and seen[0].startswith("grammar") and seen[0] != threading.current_thread().name


def test_concurrent_submits_share_one_compile(compiler, monkeypatch):
    calls = []
    original = compiler.compile_uncached

    def slow(key):
        calls.append(key)
        time.sleep(0.2)
        return original(key)
    monkeypatch.setattr(compiler, "compile_uncached", slow)
    futures = [compiler.submit("regex", "a[0-9]") for _ in range(4)]
    grammars = {id(f.result(timeout=5)) for f in futures}
    assert len(grammars) == 1 and len(calls) == 1


def test_timeout_fails_only_that_future(monkeypatch):
    compiler = GrammarCompiler(VOCAB, timeout_s=0.2)
    original = compiler.compile_uncached

    def maybe_slow(key):
        if key == ("regex", "deaf"):
            time.sleep(1.0)
        return original(key)
    monkeypatch.setattr(compiler, "compile_uncached", maybe_slow)
    slow = compiler.submit("regex", "deaf")
    fast = compiler.submit("regex", "bead")
    assert fast.result(timeout=5).regex == "bead"
    with pytest.raises(ValueError, match="exceeded 0.2 s"):
        slow.result(timeout=5)
    time.sleep(1.0)  # the worker finished anyway: the next request hits the cache
    assert compiler.submit("regex", "deaf").result(timeout=1).regex == "deaf"
    compiler.shutdown()


def test_errors_arrive_through_the_future(compiler):
    with pytest.raises(ValueError, match="invalid regex"):
        compiler.submit("regex", "a(").result(timeout=5)
    with pytest.raises(UnsupportedSchemaError, match="'not' at '/not'"):  # no string fails a pattern's complement we can write
        compiler.submit("json_schema", {"type": "string", "not": {"pattern": "^a"}}).result(timeout=5)
    with pytest.raises(ValueError, match="not valid JSON"):
        compiler.submit("json_schema", "{oops").result(timeout=5)
    with pytest.raises(ValueError, match="unknown grammar kind"):
        compiler.compile("lark", "start: 'a'")
    with pytest.raises(ValueError, match="line 1, column 10: unterminated string"):
        compiler.compile("ebnf", "root ::= 'a")
    with pytest.raises(ValueError, match="choices"):
        compiler.compile("choices", "abc")


def test_an_internal_error_fails_only_that_spec(compiler, monkeypatch):
    """A compiler bug met by one spec surfaces as that spec's ValueError (the engine ends that
    request alone), and the compiler goes on serving others."""
    from radixgen.constrained import compiler as module

    def broken(*args, **kwargs):
        raise IndexError("tuple index out of range")
    monkeypatch.setattr(module, "json_schema_parts", broken)
    with pytest.raises(ValueError, match="IndexError"):
        compiler.compile("json_schema", {"type": "integer"})
    assert compiler.compile("regex", "a+").new_matcher().advance(1)  # token 1 is "a"


def test_deadlines_take_no_thread_each():
    """A timer thread per submitted spec once left ~100 threads after 150 schemas (issue 14)."""
    compiler = GrammarCompiler(VOCAB, timeout_s=30.0)
    compiler.submit("regex", "deaf").result(timeout=5)
    before = threading.active_count()
    futures = [compiler.submit("regex", f"a{i}") for i in range(60)]
    for f in futures:
        f.result(timeout=10)
    assert threading.active_count() <= before + 2, threading.enumerate()
    compiler.shutdown()


def test_size_and_repetition_caps_are_checked_before_compiling():
    compiler = GrammarCompiler(VOCAB)
    with pytest.raises(ValueError, match="repeats something 20,000 times"):
        compiler.submit("regex", "a{2,20000}").result(timeout=5)
    with pytest.raises(ValueError, match="characters, over the limit"):
        compiler.submit("regex", "a" * 70_000).result(timeout=5)
    with pytest.raises(ValueError, match="choices take at most"):
        compiler.submit("choices", ["a"] * 5000).result(timeout=5)
    assert canonical_spec("regex", r"a{3}\{99999}") == r"a{3}\{99999}"  # an escaped brace counts nothing
    compiler.shutdown()
