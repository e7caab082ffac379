"""Grammar compiles in a sandbox process (issue 14): a compile past its time limit is killed, not
left running; one past its memory cap is refused naming the cap; after a run of the dev set's
largest schemas under a tiny time limit, the process's memory and thread count are back where
they were."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import psutil
import pytest

from constrained_helpers import byte_ids, encode, forced_through

from radixgen.constrained import GrammarCompiler

pytestmark = pytest.mark.slow  # each sandbox child takes ~3 s to start (it imports torch), and kills restart it
DEV = Path(__file__).resolve().parents[3] / "shared" / "data" / "jsonschemas-dev"
BLOW_UP = "[ab]*a[ab]{22}"  # its DFA has 2**23 states: minutes and gigabytes for a thread


@pytest.fixture(scope="module")
def boxed(smollm_tokenizer):
    compiler = GrammarCompiler(smollm_tokenizer, timeout_s=3.0, sandbox_memory_mb=512)
    compiler._sandbox.wait_ready()
    yield compiler
    compiler.shutdown()


def test_sandboxed_grammar_masks_like_the_in_process_one(boxed, smollm, smollm_tokenizer):
    """Compiled in the child and pickled back (choices) or built here after the child's trial
    (JSON, regex, EBNF): the same masks as the in-process compiler's, on the parent's own
    vocabulary."""
    cases = [("regex", r"\d{3}-[a-z]{2}", ["123-ab"], ["12-ab", "123-a1"]),
             ("choices", ["yes", "no", "maybe"], ["maybe", "no"], ["mayb", "yess"]),
             ("json_schema", {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
              ['{"n": 7}'], ['{"n": "7"}', '{}']),
             ("ebnf", 'root ::= "(" root ")" | [0-9]+', ["((42))"], ["((42)", "()"])]
    for kind, spec, good, bad in cases:
        ours, ref = boxed.compile(kind, spec), smollm.compile(kind, spec)
        assert type(ours) is type(ref) and ours.token_vocab is boxed.token_vocab  # re-attached, not a copy
        for text in good + bad:
            for ids in (encode(smollm_tokenizer, text), byte_ids(ref, text)):
                assert forced_through(ours, ids) == forced_through(ref, ids) == (text in good), (kind, text)


def test_a_runaway_compile_is_killed_at_its_deadline(boxed):
    pids = set(boxed._sandbox.pids())
    start = time.monotonic()
    with pytest.raises(ValueError, match=r"exceeded 3 s|memory cap"):
        boxed.compile("regex", BLOW_UP)
    assert time.monotonic() - start < 3.0 + 2.0
    def alive(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False
    for _ in range(20):  # the child is killed at the same deadline, on the compile thread
        if not any(alive(p) for p in pids):
            break
        time.sleep(0.1)
    assert pids and not any(alive(p) for p in pids), "the compiling child still runs"
    boxed._sandbox.wait_ready()  # a new child is starting already
    assert boxed.compile("regex", "[0-9]+").regex == "[0-9]+"  # and serves the next spec


def test_a_compile_past_the_memory_cap_is_refused_naming_it(smollm_tokenizer):
    compiler = GrammarCompiler(smollm_tokenizer, timeout_s=60.0, sandbox_memory_mb=64)
    compiler._sandbox.wait_ready()
    try:
        with pytest.raises(ValueError, match="memory cap of 64 MB"):
            compiler.compile("regex", BLOW_UP)
        compiler._sandbox.wait_ready()
        assert compiler.compile("regex", "[0-9]+").regex == "[0-9]+"
    finally:
        compiler.shutdown()


@pytest.mark.skipif(not DEV.is_dir(), reason="../shared/data/jsonschemas-dev is not beside the checkout")
def test_largest_dev_schemas_under_a_tiny_limit_leave_nothing_behind(smollm_tokenizer):
    """Two passes over the dev set's largest schemas with a 50 ms limit: the second pass leaves the
    thread count and resident memory where the first left them (nothing accumulates per refusal)."""
    files = sorted((p for p in DEV.glob("*.json") if p.name[:3].isdigit()), key=lambda p: -p.stat().st_size)[:5]
    schemas = [json.loads(p.read_text())["schema"] for p in files]
    me = psutil.Process()
    compiler = GrammarCompiler(smollm_tokenizer, timeout_s=0.05, sandbox_memory_mb=512)

    def one_pass() -> list[str]:
        outcomes = []
        for schema in schemas:
            try:
                compiler.compile("json_schema", schema)
                outcomes.append("compiled")
            except ValueError as exc:
                outcomes.append("exceeded" if "exceeded" in str(exc) else "refused")
        compiler._sandbox.wait_ready()  # the restarts after kills are done
        time.sleep(0.3)
        return outcomes

    try:
        compiler._sandbox.wait_ready()
        first = one_pass()
        assert "exceeded" in first, first  # the limit was really hit, and the work killed
        rss, threads, children = me.memory_info().rss, threading.active_count(), len(me.children())
        assert "exceeded" in one_pass()
        # + 1: the compile pool may start its second worker thread; a leak would add one per schema
        assert threading.active_count() <= threads + 1, threading.enumerate()
        assert len(me.children()) <= children
        assert me.memory_info().rss < rss + 32 * 2 ** 20, (me.memory_info().rss - rss) / 2 ** 20
    finally:
        compiler.shutdown()
