"""One request must never take the engine down (issue 14): bad values are refused at the door, a
failing step ends the request at fault alone, a dead engine loop fails its callers at once, and the
waiting queue is bounded. Faults are injected into the real engine (tiny random Llama)."""
from __future__ import annotations

import time

import pytest

import radixgen
from radixgen.runtime.errors import EngineOverloadedError, EngineUnavailableError

GREEDY = {"temperature": 0, "max_new_tokens": 6, "ignore_eos": True}
POISON = 777  # a token id only the faulty request's prompt carries


@pytest.fixture(scope="module")
def eng(tiny_dir):
    with radixgen.Engine(tiny_dir, dtype="float32", max_total_tokens=3000, context_length=256) as e:
        yield e


def assert_idle_and_sound(e: radixgen.Engine) -> None:
    stats = e.get_stats()
    assert stats["num_running"] == stats["num_waiting"] == stats["kv_locked"] == 0, stats
    e.check()


def test_seed_out_of_torch_range_is_refused_and_samples_wrap(eng):
    with pytest.raises(ValueError, match="seed"):
        eng.generate("hi", {"seed": 2 ** 64, "max_new_tokens": 2})
    outs = eng.generate("hi", {"seed": 2 ** 64 - 1, "n": 2, "max_new_tokens": 2})  # sample 1 wraps to 0
    assert [o["meta_info"]["finish_reason"]["type"] for o in outs] == ["length", "length"]
    assert_idle_and_sound(eng)


def test_token_ids_outside_the_vocabulary_fail_only_their_request(eng):
    """stop_token_ids past the vocabulary once indexed out of range inside the batched step (with
    min_new_tokens) and failed every request in flight."""
    with pytest.raises(ValueError, match="stop_token_ids"):
        eng.generate("hi", {"stop_token_ids": [10 ** 6], "min_new_tokens": 2, "max_new_tokens": 4})
    running = eng.generate("c d", {**GREEDY, "max_new_tokens": 40}, stream=True)
    next(running)  # another caller's request, in flight
    with pytest.raises(ValueError, match="stop_token_ids"):  # a call with one bad request runs none
        eng.generate(["a b", "c d"], [{"stop_token_ids": [10 ** 6], "min_new_tokens": 2}, GREEDY])
    *_, last = running
    assert last["meta_info"]["finish_reason"]["type"] == "length"
    with pytest.raises(ValueError, match="logit_bias"):
        eng.generate("hi", {"logit_bias": {10 ** 6: 1.0}})
    assert_idle_and_sound(eng)


def test_logit_bias_is_honoured(eng):
    out = eng.generate("hi", {**GREEDY, "logit_bias": {"42": 100}})
    assert out["output_ids"] == [42] * 6
    banned = eng.generate("hi", GREEDY)["output_ids"][0]
    assert eng.generate("hi", {**GREEDY, "logit_bias": {banned: -100}})["output_ids"][0] != banned


def test_deeply_nested_schema_string_is_a_clear_error(eng):
    with pytest.raises(ValueError, match="json_schema"):
        eng.generate("hi", {"json_schema": "[" * 100_000, "max_new_tokens": 2})
    assert eng.generate("hi", GREEDY)["meta_info"]["finish_reason"]["type"] == "length"


@pytest.mark.parametrize("at_output_len", [0, 3], ids=["prefill", "decode"])
def test_a_failing_step_ends_only_the_request_at_fault(eng, monkeypatch, at_output_len):
    """The model's forward raises whenever the batch holds the poisoned request (from its prefill,
    or only once it has 3 output tokens): that request ends with the error, its batch-mates give
    exactly what they give without it, and the KV accounting holds."""
    prompts = [[1, 2, 3, 4, i] for i in range(100, 105)]
    clean = eng.generate(input_ids=prompts, sampling_params=GREEDY)
    runner, real = eng.core.runner, eng.core.runner.forward

    def forward(batch, table):
        if any(POISON in r.prompt_ids and len(r.output_ids) >= at_output_len for r in batch.reqs):
            raise RuntimeError("injected fault")
        return real(batch, table)

    monkeypatch.setattr(runner, "forward", forward)
    outs = eng.generate(input_ids=prompts[:2] + [[1, 2, POISON]] + prompts[2:], sampling_params=GREEDY)
    bad = outs.pop(2)["meta_info"]["finish_reason"]
    assert bad["type"] == "abort" and "injected fault" in bad["message"]
    assert [o["output_ids"] for o in outs] == [o["output_ids"] for o in clean]
    monkeypatch.undo()
    assert_idle_and_sound(eng)


class Fatal(BaseException):
    """What no `except Exception` catches (a stand-in for an interpreter-level failure)."""


def test_a_dead_engine_loop_fails_callers_at_once(tiny_dir, monkeypatch):
    with radixgen.Engine(tiny_dir, dtype="float32", max_total_tokens=1000, context_length=128) as e:
        assert e.health(stall_s=60) is None
        it = e.generate("once upon", {**GREEDY, "max_new_tokens": 200}, stream=True)
        next(it)  # running

        def step():
            raise Fatal("injected")

        monkeypatch.setattr(e.core, "step", step)
        start = time.monotonic()
        *_, last = it  # the running request's caller is answered, not left waiting forever
        assert last["meta_info"]["finish_reason"]["type"] == "abort"
        assert "engine stopped" in last["meta_info"]["finish_reason"]["message"]
        with pytest.raises(EngineUnavailableError, match="Fatal"):
            e.generate("hi", GREEDY)
        with pytest.raises(EngineUnavailableError):
            e.get_stats()
        assert time.monotonic() - start < 10
        assert "Fatal" in e.health(stall_s=60)


def test_the_waiting_queue_is_bounded(tiny_dir):
    with radixgen.Engine(tiny_dir, dtype="float32", max_total_tokens=1000, context_length=256,
                         max_running_requests=1, max_queued_requests=4) as e:
        with pytest.raises(ValueError, match="over the bound"):
            e.generate(["a"] * 5, GREEDY)  # can never fit: the caller's fault
        long = {**GREEDY, "max_new_tokens": 200}
        it = e.generate(["a", "b", "c", "d"], long, stream=True)  # 1 runs, 3 wait
        next(it)
        with pytest.raises(EngineOverloadedError):
            e.generate(["x", "y"], GREEDY)
        it.close()  # aborts the four
        assert e.generate("x", GREEDY)["meta_info"]["finish_reason"]["type"] == "length"
        assert_idle_and_sound(e)


def test_a_context_longer_than_the_pool_is_capped(tiny_dir):
    """A pool that cannot hold one full-context request caps the context (and says so in the log),
    so a request is refused at the door or cut at the cap with its output kept, never lost."""
    with radixgen.Engine(tiny_dir, dtype="float32", max_total_tokens=100, context_length=256) as e:
        assert e.core.context_length == 100
        with pytest.raises(ValueError, match="context length of 100"):
            e.generate(input_ids=list(range(1, 151)), sampling_params=GREEDY)
        out = e.generate(input_ids=list(range(1, 91)), sampling_params={**GREEDY, "max_new_tokens": 50})
        assert out["meta_info"]["finish_reason"]["type"] == "length" and len(out["output_ids"]) == 10
        assert_idle_and_sound(e)
