"""The model's attention goes through one signature: swapping the torch reference for the Triton
kernels (interpreted on the CPU here) must change nothing but speed."""
from __future__ import annotations

import pytest

import radixgen


@pytest.mark.parametrize("page_size", [1, 16])
def test_engine_steps_with_triton_match_the_torch_path(tiny_dir, triton_kernels, page_size):
    prompts = [list(range(200, 213)), list(range(300, 305)), list(range(400, 430))]
    params = {"temperature": 0, "max_new_tokens": 4, "ignore_eos": True}
    outs = {}
    for backend in ("reference", "triton"):
        with radixgen.Engine(tiny_dir, dtype="float32", max_total_tokens=512, page_size=page_size,
                             attention_backend=backend) as eng:
            first = eng.generate(input_ids=prompts, sampling_params=params)
            again = eng.generate(input_ids=prompts, sampling_params=params)  # extend over a cached prefix
            outs[backend] = [o["output_ids"] for o in first + again]
            if page_size == 1:
                assert sum(o["meta_info"]["cached_tokens"] for o in again) > 0
    assert outs["triton"] == outs["reference"]


@pytest.mark.slow  # ~30 s interpreted
def test_gemma2_softcap_and_window_with_triton_match_the_torch_path(tmp_path, bundled_dir, triton_kernels):
    """Gemma 2's soft-capped, alternately windowed attention through the Triton kernels in a real
    engine: the same greedy tokens as the torch reference (itself equal to transformers: see
    tests/runtime/test_model_families.py)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Gemma2Config

    config = Gemma2Config(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                          num_attention_heads=4, num_key_value_heads=2, head_dim=32, query_pre_attn_scalar=24,
                          sliding_window=8, attn_logit_softcapping=1.0, final_logit_softcapping=3.0,
                          initializer_range=0.3, eos_token_id=2, bos_token_id=1, pad_token_id=0)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(bundled_dir).save_pretrained(tmp_path)
    prompts = [list(range(200, 230)), list(range(300, 305)), list(range(400, 420))]
    params = {"temperature": 0, "max_new_tokens": 4, "ignore_eos": True}
    outs = {}
    for backend in ("reference", "triton"):
        with radixgen.Engine(str(tmp_path), dtype="float32", max_total_tokens=512, chunked_prefill_size=16,
                             attention_backend=backend, skip_warmup=True) as eng:
            outs[backend] = [o["output_ids"] for o in eng.generate(input_ids=prompts, sampling_params=params)]
    assert outs["triton"] == outs["reference"]
