"""Bad input gets a ValueError saying what was wrong; the engine keeps serving afterwards."""
from __future__ import annotations

import json
import shutil

import pytest

import radixgen
from radixgen import SamplingParams
from radixgen.runtime.config import EngineConfig


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    with radixgen.Engine(tiny_dir, dtype="float32", max_total_tokens=3000, context_length=256) as eng:
        yield eng


@pytest.mark.parametrize("kwargs, words", [
    ({"max_new_tokens": -1}, "max_new_tokens"), ({"max_new_tokens": 10**9}, "absurd"),
    ({"top_p": 0}, "top_p"), ({"top_p": 1.5}, "top_p"), ({"temperature": -1}, "temperature"),
    ({"n": 0}, "n must"), ({"top_k": -5}, "top_k"), ({"stop": [""]}, "stop"),
    ({"temprature": 0.5}, "did you mean 'temperature'"), ({"top_logprobs_num": 1000}, "top_logprobs_num"),
    ({"regex": "a", "choices": ["b"]}, "at most one"),
])
def test_bad_sampling_params(kwargs, words):
    with pytest.raises(ValueError, match=words):
        SamplingParams(**kwargs)


def test_bad_config_keys():
    with pytest.raises(ValueError, match="did you mean 'page_size'"):
        EngineConfig.from_kwargs(page_sise=4)
    with pytest.raises(ValueError, match="schedule_policy"):
        EngineConfig(schedule_policy="random")


def test_bad_requests_then_engine_still_serves(tiny):
    sp = {"max_new_tokens": 4, "temperature": 0}
    bad = [
        (dict(prompt=[]), "non-empty list"),
        (dict(input_ids=[]), "exactly one|empty"),
        (dict(input_ids=list(range(100, 400))), "context length"),
        (dict(input_ids=[10**7]), "token ids"),
        (dict(prompt="hi", input_ids=[1]), "exactly one"),
        (dict(prompt=["a", "b"], sampling_params=[sp]), "2 prompts"),
        (dict(prompt="hi", sampling_params={"max_tokens": -3}), "max_new_tokens"),
        (dict(prompt="hi", sampling_params="greedy"), "dict or SamplingParams"),
    ]
    for kwargs, words in bad:
        kwargs.setdefault("sampling_params", sp)
        with pytest.raises(ValueError, match=words):
            tiny.generate(**kwargs)
    assert len(tiny.generate(prompt=["hello", "world"], sampling_params=sp)) == 2
    s = tiny.get_stats()
    assert s["num_running"] == 0 and s["num_waiting"] == 0 and s["kv_locked"] == 0


def test_missing_model_and_corrupt_weights(tmp_path, tiny_dir):
    with pytest.raises(ValueError, match="does not exist"):
        radixgen.Engine(str(tmp_path / "nope"))
    broken = tmp_path / "broken"
    shutil.copytree(tiny_dir, broken)
    (broken / "model.safetensors").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(ValueError, match="corrupt or unreadable weights"):
        radixgen.Engine(str(broken), dtype="float32", max_total_tokens=100)
    cfg = json.loads((broken / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps({**cfg, "model_type": "gpt2"}))
    with pytest.raises(ValueError):
        radixgen.Engine(str(broken), dtype="float32", max_total_tokens=100)


def test_an_internal_error_fails_the_batch_and_the_engine_keeps_serving(tiny):
    runner = tiny.core.runner
    real = runner.forward

    def broken(*args, **kwargs):
        runner.forward = real  # fail once
        raise RuntimeError("boom")

    runner.forward = broken
    out = tiny.generate(prompt="hello", sampling_params={"max_new_tokens": 4})
    assert out["meta_info"]["finish_reason"]["type"] == "abort" and "boom" in out["meta_info"]["finish_reason"]["message"]
    ok = tiny.generate(prompt="hello", sampling_params={"max_new_tokens": 4, "temperature": 0})
    assert ok["meta_info"]["finish_reason"]["type"] in ("stop", "length")
    s = tiny.get_stats()
    assert s["kv_locked"] == 0 and s["kv_free"] + s["kv_evictable"] == s["kv_capacity"]
