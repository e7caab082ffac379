"""The bf16 path (what dtype=auto picks on this CPU: prepacked matmuls with padded row counts, the
fused C++ layer ops) against transformers in bf16 on the same weights.

bf16 results depend on where each implementation rounds and sums, so tokens may part ways at a
near-tie; the test compares log-probabilities under teacher forcing instead: the prompt's (prefill
path) and our generated tokens' (decode path), scored by transformers on the same sequence.
"""
from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

import radixgen
from radixgen.kernels import cpu, cpu_layer_ops
from radixgen.runtime.models.llama import can_prepack

PROMPTS = ["What is the capital of France?", "Write a haiku about the sea.",
           "How do I reverse a list in Python?", "Explain gravity to a child."]


@pytest.fixture(scope="module")
def engine_bf16():
    with radixgen.Engine(dtype="bfloat16", max_total_tokens=4096) as engine:
        yield engine


def test_bf16_logprobs_follow_transformers(engine_bf16):
    # the path under test: fused C++ layer ops and prepacked matmuls (else this only tests torch)
    if cpu.is_available():
        assert engine_bf16.core.runner.ops is cpu_layer_ops
    if can_prepack(torch.device("cpu"), torch.bfloat16):
        assert engine_bf16.core.runner.model.layers[0].mlp.gate_up_proj.packed is not None
    hf = AutoModelForCausalLM.from_pretrained(engine_bf16.model_path, dtype=torch.bfloat16).eval()
    ids = [engine_bf16.apply_chat_template([{"role": "user", "content": p}]) for p in PROMPTS]
    outs = engine_bf16.generate(input_ids=ids, return_logprob=True, logprob_start_len=0,
                                sampling_params={"temperature": 0, "max_new_tokens": 24})
    diffs = []
    for prompt_ids, out in zip(ids, outs):
        seq = prompt_ids + out["output_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(hf(torch.tensor([seq])).logits[0].float(), dim=-1)
        ref = [logp[p - 1, seq[p]].item() for p in range(1, len(seq))]
        ours = [lp for lp, _, _ in out["meta_info"]["input_token_logprobs"][1:]]
        ours += [lp for lp, _, _ in out["meta_info"]["output_token_logprobs"]]
        assert len(ours) == len(ref)
        diffs += [abs(a - b) for a, b in zip(ours, ref)]
        # our greedy pick is transformers' pick too, or within bf16 noise of it
        for p, tok in enumerate(out["output_ids"], start=len(prompt_ids) - 1):
            assert logp[p].max().item() - logp[p, tok].item() < 0.5  # a few bf16 ulps of a logit
    diffs_t = torch.tensor(diffs)
    # measured: mean 0.009, max 0.14 (the torch ops in bf16: 0.0075, 0.14)
    assert diffs_t.mean() < 0.03 and diffs_t.max() < 0.5, (diffs_t.mean(), diffs_t.max())
    engine_bf16.check()


def test_matmul_row_padding_is_tight_and_has_few_sizes():
    from radixgen.runtime.models.llama import padded_rows
    sizes = {padded_rows(m) for m in range(1, 2049)}
    assert len(sizes) == 72  # the kernels warm_up builds
    for m in range(1, 5000):
        p = padded_rows(m)
        assert m <= p <= m * 9 / 8 and padded_rows(p) == p
