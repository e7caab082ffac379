"""The radix cache inside the engine: same outputs as without it, hits reported, nothing leaked."""
from __future__ import annotations

import random

import pytest

import radixgen

GREEDY = {"temperature": 0, "max_new_tokens": 12, "ignore_eos": True}


@pytest.fixture(scope="module")
def pair(tiny_dir):
    with radixgen.Engine(tiny_dir, dtype="float32", max_total_tokens=6000) as on, \
         radixgen.Engine(tiny_dir, dtype="float32", max_total_tokens=6000, disable_radix_cache=True) as off:
        yield on, off


def _idle_and_clean(engine) -> None:
    s = engine.get_stats()
    assert s["num_running"] == 0 and s["kv_locked"] == 0
    assert s["kv_free"] + s["kv_evictable"] == s["kv_capacity"]
    engine.check()


def test_shared_prefix_outputs_equal_and_hits_reported(pair):
    on, off = pair
    on.flush_cache()
    rng = random.Random(0)
    prefix = [rng.randrange(100, 20000) for _ in range(200)]
    prompts = [prefix + [rng.randrange(100, 20000) for _ in range(rng.randrange(1, 30))] for _ in range(16)]
    first = on.generate(input_ids=prompts[0], sampling_params=GREEDY)
    assert first["meta_info"]["cached_tokens"] == 0
    rest = on.generate(input_ids=prompts[1:], sampling_params=GREEDY)
    ref = off.generate(input_ids=prompts, sampling_params=GREEDY)
    assert [o["output_ids"] for o in [first] + rest] == [o["output_ids"] for o in ref]
    for o in rest:  # the shared part is exactly the 200-token prefix (continuations differ at once)
        assert o["meta_info"]["cached_tokens"] >= 200
    assert all(o["meta_info"]["cached_tokens"] == 0 for o in ref)
    _idle_and_clean(on)


def test_multi_turn_hits_the_generated_answer(pair):
    on, off = pair
    on.flush_cache()
    rng = random.Random(1)
    history: list[int] = []
    for turn in range(4):
        history = history + [rng.randrange(100, 20000) for _ in range(10)]
        a = on.generate(input_ids=history, sampling_params=GREEDY)
        b = off.generate(input_ids=history, sampling_params=GREEDY)
        assert a["output_ids"] == b["output_ids"]
        if turn:  # all before this turn's new text is cached, the answer too, except its last token
            assert a["meta_info"]["cached_tokens"] == len(history) - 10 - 1  # (never fed back, no KV)
        history = history + a["output_ids"]
    _idle_and_clean(on)


def test_short_prefix_shared_within_one_batch_is_computed_once(pair):
    """Requests sent together that share an uncached 20-token prefix (a chat template's system
    prompt is about that long): the first one computes it, the others wait a step and reuse it."""
    on, off = pair
    on.flush_cache()
    rng = random.Random(3)
    prefix = [rng.randrange(100, 20000) for _ in range(20)]
    suffixes = [[1000 + i] + [rng.randrange(100, 20000) for _ in range(rng.randrange(0, 12))] for i in range(8)]
    prompts = [prefix + s for s in suffixes]
    before = on.get_stats()["prefill_tokens_computed"]
    outs = on.generate(input_ids=prompts, sampling_params=GREEDY)
    computed = on.get_stats()["prefill_tokens_computed"] - before
    assert computed == len(prefix) + sum(map(len, suffixes))  # the prefix once, not 8 times
    ref = off.generate(input_ids=prompts, sampling_params=GREEDY)
    assert [o["output_ids"] for o in outs] == [o["output_ids"] for o in ref]
    _idle_and_clean(on)


def test_n_samples_share_the_prompt(pair):
    on, off = pair
    on.flush_cache()
    prompt = list(range(300, 400))
    outs = on.generate(input_ids=prompt, sampling_params={**GREEDY, "n": 4})
    assert len(outs) == 4 and len({tuple(o["output_ids"]) for o in outs}) == 1
    assert sum(o["meta_info"]["cached_tokens"] > 0 for o in outs) >= 3
    assert outs[0]["output_ids"] == off.generate(input_ids=prompt, sampling_params=GREEDY)["output_ids"]
    _idle_and_clean(on)


def test_small_pool_with_cache_completes_everything(tiny_dir):
    rng = random.Random(2)
    prefix = [rng.randrange(100, 20000) for _ in range(60)]
    prompts = [prefix + [rng.randrange(100, 20000) for _ in range(rng.randrange(5, 60))] for _ in range(80)]
    with radixgen.Engine(tiny_dir, dtype="float32", max_total_tokens=400, max_running_requests=32) as eng:
        outs = eng.generate(input_ids=prompts, sampling_params=GREEDY)
        assert all(len(o["output_ids"]) == 12 for o in outs)
        assert eng.get_stats()["cached_tokens"] > 0
        _idle_and_clean(eng)
        assert eng.flush_cache()
        s = eng.get_stats()
        assert s["kv_free"] == s["kv_capacity"]
