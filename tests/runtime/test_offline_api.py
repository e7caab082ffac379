"""The offline doors: vLLM's LLM example by changing its import, async and streaming Engine calls,
and the `radixgen batch` CLI with a bad line."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from radixgen import LLM, SamplingParams


@pytest.fixture(scope="module")
def llm(tiny_dir):
    engine_llm = LLM(model=tiny_dir, max_model_len=512, dtype="float32", max_total_tokens=4000)
    yield engine_llm
    engine_llm.engine.shutdown()


def test_vllm_offline_example(llm):
    prompts = ["Hello, my name is", "The president of the United States is", "The future of AI is"]
    outputs = llm.generate(prompts, SamplingParams(temperature=0.8, top_p=0.95, max_tokens=8, seed=0))
    assert [o.prompt for o in outputs] == prompts
    for o in outputs:
        assert o.prompt_token_ids == llm.get_tokenizer().encode(o.prompt)
        assert len(o.outputs) == 1 and 1 <= len(o.outputs[0].token_ids) <= 8
        assert o.outputs[0].finish_reason in ("stop", "length")
    two = llm.generate({"prompt_token_ids": [5, 6, 7]}, SamplingParams(n=2, max_tokens=4, temperature=1.0, seed=3))
    assert len(two) == 1 and [c.index for c in two[0].outputs] == [0, 1]
    chat = llm.chat([{"role": "user", "content": "hi"}], SamplingParams(max_tokens=4, logprobs=2))
    assert len(chat[0].outputs[0].logprobs) == len(chat[0].outputs[0].token_ids)


def test_async_generate_and_stream(llm):
    engine = llm.engine

    async def main():
        one = await engine.async_generate("abc", {"max_new_tokens": 5, "temperature": 0, "ignore_eos": True})
        many = await asyncio.gather(*[engine.async_generate(p, {"max_new_tokens": 3}) for p in ["a", "b", "c"]])
        stream = await engine.async_generate("abc", {"max_new_tokens": 5, "temperature": 0, "ignore_eos": True},
                                             stream=True)
        chunks = [c async for c in stream]
        return one, many, chunks

    one, many, chunks = asyncio.run(main())
    assert len(one["output_ids"]) == 5 and len(many) == 3
    assert sum((c["output_ids"] for c in chunks), []) == one["output_ids"]


def test_stream_abandoned_early_frees_kv(llm):
    engine = llm.engine
    it = engine.generate("abc", {"max_new_tokens": 200, "ignore_eos": True}, stream=True)
    next(it)
    it.close()  # the consumer walks away
    for _ in range(100):
        s = engine.get_stats()
        if s["num_running"] == 0 and s["num_waiting"] == 0:
            break
    assert s["kv_locked"] == 0 and s["kv_free"] + s["kv_evictable"] == s["kv_capacity"]


def test_batch_cli_reports_bad_lines_and_keeps_order(tmp_path, tiny_dir):
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join([
        json.dumps({"prompt": "one", "sampling_params": {"max_new_tokens": 3}}),
        "{not json",
        json.dumps({"messages": [{"role": "user", "content": "two"}], "sampling_params": {"max_new_tokens": 3}}),
        json.dumps({"prompt": "three", "sampling_params": {"top_p": 7}}),
        json.dumps({"input_ids": [4, 5, 6], "sampling_params": {"max_new_tokens": 2, "n": 2}}),
    ]) + "\n")
    out = tmp_path / "out.jsonl"
    proc = subprocess.run([sys.executable, "-m", "radixgen", "batch", str(src), "-o", str(out), "--model", tiny_dir,
                           "--dtype", "float32", "--max-total-tokens", "2000"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1, proc.stderr  # bad lines make the exit code non-zero, after the good ones ran
    assert ":2:" in proc.stderr and ":4:" in proc.stderr and "top_p" in proc.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 3, 4, 5]
    assert "error" in rows[1] and "error" in rows[3]
    assert len(rows[0]["outputs"]) == 1 and len(rows[4]["outputs"]) == 2
