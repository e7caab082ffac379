"""The bf16 path (what dtype=auto picks on this CPU: our AMX matmuls for small batches, oneDNN's
prepacked ones with padded row counts for large, the fused C++ layer ops) against the float32 model.

bf16 results depend on where each implementation rounds and sums, and this model amplifies a
one-ulp change in one matmul into ~0.05 of a token's logprob; so tokens may part ways at a
near-tie. The test scores sequences under teacher forcing instead (the prompt: prefill path; our
generated tokens: decode path) and asks that our bf16 stay as close to transformers' float32 as
transformers' own bf16 does. (Measured: mean |diff| 0.056 for ours, 0.057 for transformers' bf16.
With oneDNN for every matmul, as transformers uses, ours matched transformers' bf16 to 0.009.)
"""
from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from radixgen.kernels import cpu, cpu_layer_ops
from radixgen.runtime.models.llama import can_prepack

PROMPTS = ["What is the capital of France?", "Write a haiku about the sea.",
           "How do I reverse a list in Python?", "Explain gravity to a child."]


def test_bf16_logprobs_follow_transformers(engine_bf16):
    # the path under test: fused C++ layer ops and prepacked matmuls (else this only tests torch)
    if cpu.is_available():
        assert engine_bf16.core.runner.ops is cpu_layer_ops
    if can_prepack(torch.device("cpu"), torch.bfloat16):
        assert engine_bf16.core.runner.model.layers[0].mlp.gate_up_proj.packed is not None
        if cpu_layer_ops.pack_linear_small(torch.zeros(32, 2, dtype=torch.bfloat16)) is not None:
            gate_up = engine_bf16.core.runner.model.layers[0].mlp.gate_up_proj
            assert gate_up.small is not None and gate_up.small_rows == cpu_layer_ops.small_rows() > 0
    hf16 = AutoModelForCausalLM.from_pretrained(engine_bf16.model_path, dtype=torch.bfloat16).eval()
    hf32 = AutoModelForCausalLM.from_pretrained(engine_bf16.model_path, dtype=torch.float32).eval()
    ids = [engine_bf16.apply_chat_template([{"role": "user", "content": p}]) for p in PROMPTS]
    outs = engine_bf16.generate(input_ids=ids, return_logprob=True, logprob_start_len=0,
                                sampling_params={"temperature": 0, "max_new_tokens": 24})
    ours_d, hf16_d = [], []
    for prompt_ids, out in zip(ids, outs):
        seq = prompt_ids + out["output_ids"]
        with torch.no_grad():
            logp32, logp16 = (torch.log_softmax(m(torch.tensor([seq])).logits[0].float(), dim=-1) for m in (hf32, hf16))
        at = lambda logp: [logp[p - 1, seq[p]].item() for p in range(1, len(seq))]  # noqa: E731
        ref = at(logp32)
        ours = [lp for lp, _, _ in out["meta_info"]["input_token_logprobs"][1:]]
        ours += [lp for lp, _, _ in out["meta_info"]["output_token_logprobs"]]
        assert len(ours) == len(ref)
        ours_d += [abs(a - b) for a, b in zip(ours, ref)]
        hf16_d += [abs(a - b) for a, b in zip(at(logp16), ref)]
        # our greedy pick is the float32 model's pick too, or within bf16 noise of it
        for p, tok in enumerate(out["output_ids"], start=len(prompt_ids) - 1):
            assert logp32[p].max().item() - logp32[p, tok].item() < 0.5
    ours_t, hf16_t = torch.tensor(ours_d), torch.tensor(hf16_d)
    assert ours_t.mean() < 1.3 * hf16_t.mean() + 0.01, (ours_t.mean(), hf16_t.mean())
    assert ours_t.max() < 1.0, ours_t.max()
    engine_bf16.check()


def test_matmul_row_padding_is_tight_and_has_few_sizes():
    from radixgen.runtime.models.llama import padded_rows
    sizes = {padded_rows(m) for m in range(1, 2049)}
    assert len(sizes) == 72  # the kernels warm_up builds
    for m in range(1, 5000):
        p = padded_rows(m)
        assert m <= p <= m * 9 / 8 and padded_rows(p) == p


def test_packed_linear_without_small_kernel_takes_zero_rows():
    """A prepacked Linear whose weight our small-rows kernel cannot take (no AMX / AVX512-BF16, or
    not bf16) has no packed copy for that path; a forward of 0 rows (a batch where no request wants
    logits yet) once reached it anyway: AttributeError on the tied lm_head (issue 13). float32
    weights prepack for oneDNN on any x86 CPU, so this runs everywhere."""
    from radixgen.runtime.models.llama import Linear
    torch.manual_seed(0)
    linear = Linear(64, 96, bias=False)
    linear.pack()
    assert linear.packed is not None and linear.small is None
    for m in (0, 1, 3, 300):
        x = torch.randn(m, 64)
        got = linear(x)
        assert got.shape == (m, 96)
        torch.testing.assert_close(got, torch.nn.functional.linear(x, linear.weight), atol=1e-4, rtol=1e-4)
