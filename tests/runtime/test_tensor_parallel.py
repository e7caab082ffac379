"""Tensor parallelism (runtime/tp/): tp_size=2 runs the real engine as two processes over gloo, and its
greedy tokens equal tp_size=1's on the same tiny random models (float32, several requests batched,
16-token prefill chunks, a second round from the radix cache). Sizes that do not split over the
ranks are refused by name; a rank that dies stops the engine with an error naming it, never a hang."""
from __future__ import annotations

import os
import signal
import threading

import pytest
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

import radixgen
from radixgen.runtime.errors import EngineUnavailableError

COMMON = dict(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
              initializer_range=0.3, eos_token_id=2, bos_token_id=1, pad_token_id=0)
FAMILIES = {  # even head counts: each of the two ranks holds 2 query heads and 1 KV head
    "llama": lambda: transformers.LlamaConfig(**COMMON, tie_word_embeddings=True),
    "qwen2": lambda: transformers.Qwen2Config(**COMMON, tie_word_embeddings=False),  # q/k/v bias
    "gemma3_text": lambda: transformers.Gemma3TextConfig(  # q/k norms, windows, GeGLU, scaled embeddings
        **{**COMMON, "num_hidden_layers": 4}, head_dim=32, query_pre_attn_scalar=24, sliding_window=16,
        final_logit_softcapping=30.0,
        layer_types=["sliding_attention", "full_attention", "sliding_attention", "sliding_attention"]),
}
ENGINE_KW = dict(dtype="float32", chunked_prefill_size=16, max_total_tokens=4000, skip_warmup=True)
PARAMS = {"temperature": 0, "max_new_tokens": 8, "min_new_tokens": 8}


@pytest.fixture(scope="module")
def tokenizer(bundled_dir):
    return AutoTokenizer.from_pretrained(bundled_dir)


def save_tiny(config: transformers.PretrainedConfig, path, tokenizer) -> str:
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config, dtype=torch.float32).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def prompts() -> list[list[int]]:
    """A shared 20-token prefix (radix hits), lengths 5 to 60 (several 16-token chunks)."""
    gen = torch.Generator().manual_seed(1)
    ids = lambda n: torch.randint(100, 49000, (n,), generator=gen).tolist()  # noqa: E731
    shared = ids(20)
    return [ids(5), shared + ids(3), shared + ids(30), ids(60)]


def run_rounds(engine: radixgen.Engine) -> list[tuple[list[int], list[float]]]:
    """Two rounds of the prompts, batched (the second from the radix cache): tokens and logprobs."""
    outs = []
    for _ in range(2):
        for out in engine.generate(input_ids=prompts(), sampling_params=PARAMS, return_logprob=True):
            outs.append((out["output_ids"], [lp for lp, *_ in out["meta_info"]["output_token_logprobs"]]))
    return outs


FAMILY_CASES = [name if name == "llama" else pytest.param(name, marks=pytest.mark.slow) for name in FAMILIES]


@pytest.mark.parametrize("name", FAMILY_CASES)
def test_tp2_greedy_tokens_equal_tp1(name, tmp_path, tokenizer):
    path = save_tiny(FAMILIES[name](), tmp_path, tokenizer)
    with radixgen.Engine(model=path, num_threads=1, **ENGINE_KW) as engine:
        single = run_rounds(engine)
    with radixgen.Engine(model=path, tp_size=2, num_threads=2, **ENGINE_KW) as engine:
        workers = engine.core.runner.leader.procs
        assert len(workers) == 1 and workers[0].poll() is None
        assert engine.core.runner.pool.k.shape[2] == 1  # this rank's one KV head of two
        parallel = run_rounds(engine)
        assert engine.get_stats()["cached_tokens"] > 0
        engine.check()
    assert [tokens for tokens, _ in parallel] == [tokens for tokens, _ in single]
    for (_, lp_tp), (_, lp_one) in zip(parallel, single):  # the gathered logits are the whole vocabulary's
        assert torch.allclose(torch.tensor(lp_tp), torch.tensor(lp_one), atol=1e-4)
    assert workers[0].poll() == 0  # the worker rank stopped with the engine


@pytest.mark.parametrize("overrides, named, not_named", [
    ({"num_attention_heads": 6, "num_key_value_heads": 3, "hidden_size": 96},
     "num_key_value_heads=3", "num_attention_heads"),
    ({"num_attention_heads": 3, "num_key_value_heads": 3, "hidden_size": 48},
     "num_attention_heads=3, num_key_value_heads=3", "intermediate_size"),
    ({"intermediate_size": 129}, "intermediate_size=129", "heads"),
    ({"vocab_size": 49153}, "vocab_size=49153", "heads"),
])
def test_sizes_that_do_not_divide_are_refused_by_name(overrides, named, not_named, tmp_path, tokenizer):
    path = save_tiny(transformers.LlamaConfig(**{**COMMON, **overrides}), tmp_path, tokenizer)
    with pytest.raises(ValueError, match="tp_size=2 must divide") as err:
        radixgen.Engine(model=path, tp_size=2, **ENGINE_KW)
    assert named in str(err.value) and not_named not in str(err.value)


@pytest.mark.parametrize("kwargs, message", [
    ({"quantization": "int8"}, "quantization='int8' with tp_size > 1 is not built"),
    ({"device": "cuda"}, "NCCL on GPUs is not built"),
    ({"tp_size": 0}, "tp_size must be a positive integer"),
])
def test_what_tp_does_not_build_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        radixgen.Engine(**{"tp_size": 2, **kwargs})


def test_a_rank_that_dies_stops_the_engine_with_its_name(tiny_dir):
    """SIGKILL the worker mid-generation: the requests end (503, the rank named) and later calls
    are refused at once; nothing waits for the dead rank."""
    engine = radixgen.Engine(model=tiny_dir, tp_size=2, **ENGINE_KW)
    try:
        worker = engine.core.runner.leader.procs[0]
        assert engine.generate(input_ids=[5, 6, 7], sampling_params={"max_new_tokens": 2})["output_ids"]
        killer = threading.Timer(0.5, os.kill, (worker.pid, signal.SIGKILL))
        killer.start()
        outs = engine.generate(input_ids=prompts(), sampling_params={"max_new_tokens": 400, "ignore_eos": True})
        killer.join()
        for out in outs:
            finish = out["meta_info"]["finish_reason"]
            assert finish["type"] == "abort" and finish["status_code"] == 503
            assert f"tensor-parallel rank 1 (pid {worker.pid}) exited with code -9" in finish["message"]
        with pytest.raises(EngineUnavailableError, match="tensor-parallel rank 1"):
            engine.generate(input_ids=[5, 6], sampling_params={"max_new_tokens": 2})
        assert "tensor-parallel rank 1" in engine.health(60.0)
    finally:
        engine.shutdown()


def test_bundled_smollm2_on_three_ranks_matches_one(engine_fp32):
    """The real model (9 heads, 3 KV heads: tp_size 2 is refused, 3 divides them): three processes give
    the tokens one gives, on chat prompts (float32, greedy). Slow: it loads the real model."""
    chats = [engine_fp32.apply_chat_template([{"role": "user", "content": text}]) for text in
             ("What is the capital of France?", "Write a haiku about the sea.", "List three prime numbers.")]
    params = {"temperature": 0, "max_new_tokens": 24}
    expected = [out["output_ids"] for out in engine_fp32.generate(input_ids=chats, sampling_params=params)]
    with pytest.raises(ValueError, match="num_attention_heads=9, num_key_value_heads=3"):
        radixgen.Engine(tp_size=2, dtype="float32", skip_warmup=True)
    with radixgen.Engine(tp_size=3, dtype="float32", max_total_tokens=8000, skip_warmup=True) as engine:
        assert len(engine.core.runner.leader.procs) == 2
        outs = engine.generate(input_ids=chats, sampling_params=params)
    assert [out["output_ids"] for out in outs] == expected


@pytest.mark.parametrize("with_long", [False, True])
def test_step_payload_round_trips(with_long):
    """What rank 0 sends is what a worker rebuilds, the long-rope flags (Phi-3 128k) included."""
    from radixgen.kernels import AttnMeta
    from radixgen.runtime.tp.step import HEADER, StepInputs, pack, payload_len, unpack

    table = torch.arange(4 * 10, dtype=torch.int32).reshape(4, 10)
    meta = AttnMeta(req_to_slot=table, req_rows=torch.tensor([2, 0]), prefix_lens=torch.tensor([3, 0]),
                    extend_lens=torch.tensor([2, 4]), out_slots=torch.arange(6), max_extend=4, max_seq=5,
                    is_decode=False)
    long = torch.tensor([True, True, False, False, False, False]) if with_long else None
    step = StepInputs(torch.arange(100, 106), torch.tensor([3, 4, 0, 1, 2, 3]), meta, torch.tensor([1, 5]), long)
    header, payload = pack(step)
    fields = HEADER.unpack(header)
    assert payload.numel() == payload_len(fields)
    got = unpack(fields, payload)
    assert torch.equal(got.ids, step.ids) and torch.equal(got.positions, step.positions)
    assert torch.equal(got.logit_rows, step.logit_rows)
    assert torch.equal(got.meta.req_to_slot, table[[2, 0], :5])
    assert (got.rope_long is None) if long is None else torch.equal(got.rope_long, long)
