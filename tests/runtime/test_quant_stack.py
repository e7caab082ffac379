"""The one-call quantized decoder stack (kernels/cpu_quant_stack.py) against the per-layer path it
replaces. Both run the same kernels in the same order on the same buffers' values, so greedy tokens
and their logprobs must agree bit for bit: any difference is a wrong pointer, stride or argument.
Tiny random models through the real engine: paged KV, radix cache, batched requests, prefill in
8-token chunks (so prefill extends with a cached prefix also take the stack), then decode."""
from __future__ import annotations

import pytest
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

import radixgen
from radixgen.kernels import cpu_quant
from radixgen.kernels.cpu_quant_stack import QuantStack

pytestmark = pytest.mark.skipif(not cpu_quant.is_available(), reason="the CPU kernel library could not be built")

COMMON = dict(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
              initializer_range=0.3, eos_token_id=2, bos_token_id=1, pad_token_id=0)
CONFIGS = {"llama": lambda: transformers.LlamaConfig(**COMMON, tie_word_embeddings=True),
           # q/k/v biases: the stack's bias pointer
           "qwen2": lambda: transformers.Qwen2Config(**COMMON, tie_word_embeddings=False),
           "gemma3_text": lambda: transformers.Gemma3TextConfig(**COMMON, head_dim=32, sliding_window=16)}


def _save(name: str, path, bundled_dir: str) -> str:
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(CONFIGS[name](), dtype=torch.float32).save_pretrained(path)
    AutoTokenizer.from_pretrained(bundled_dir).save_pretrained(path)
    return str(path)


def _prompts(extra: int = 0) -> list[list[int]]:
    """3 prompts (two share a prefix), then `extra` short ones (a decode batch past 16 rows)."""
    gen = torch.Generator().manual_seed(3)
    ids = lambda n: torch.randint(100, 49000, (n,), generator=gen).tolist()  # noqa: E731
    shared = ids(12)
    return [ids(5), shared + ids(9), shared + ids(30)] + [ids(4) for _ in range(extra)]


def _run(eng: radixgen.Engine, prompts: list[list[int]]) -> list[tuple[list[int], list[float]]]:
    eng.flush_cache()
    outs = eng.generate(input_ids=prompts, return_logprob=True,
                        sampling_params={"temperature": 0, "max_new_tokens": 12, "min_new_tokens": 12})
    return [(o["output_ids"], [lp[0] for lp in o["meta_info"]["output_token_logprobs"]]) for o in outs]


@pytest.mark.parametrize("family,mode,kv", [("llama", "int4", "auto"), ("qwen2", "int8", "float32")])
def test_stack_matches_the_per_layer_path_bit_for_bit(family, mode, kv, tmp_path, bundled_dir) -> None:
    model_dir = _save(family, tmp_path, bundled_dir)
    with radixgen.Engine(model=model_dir, quantization=mode, dtype="float32", chunked_prefill_size=8,
                         max_total_tokens=2000, kv_cache_dtype=kv) as eng:
        model = eng.core.runner.model
        assert eng.core.runner.pool.k.dtype == (torch.bfloat16 if kv == "auto" else torch.float32)
        stack = model.decode_stack
        assert isinstance(stack, QuantStack)
        assert eng.core.runner.kernels["decode_stack"] == "one C++ call"  # the start-up line says so
        calls = []
        run = stack.run
        stack.run = lambda *args: calls.append(args[0].shape[0]) or run(*args)  # count, then the real call
        few, many = _prompts(), _prompts(extra=17)
        with_stack = _run(eng, few), _run(eng, many)
        model.decode_stack = None
        per_layer = _run(eng, few), _run(eng, many)
        eng.check()
    # decode steps of the 3 and of the 20 requests and the 8-token prefill chunks took it
    assert 3 in calls and 20 in calls and 8 in calls
    assert with_stack == per_layer


def test_stack_is_not_built_where_it_does_not_apply(tmp_path, bundled_dir, monkeypatch) -> None:
    """Float linears, a family with GeLU / sliding windows / q-k norms, or the off switch: no stack."""
    llama = _save("llama", tmp_path / "llama", bundled_dir)
    gemma = _save("gemma3_text", tmp_path / "gemma", bundled_dir)
    for model_dir, mode in ((llama, "none"), (gemma, "int4")):
        with radixgen.Engine(model=model_dir, quantization=mode, dtype="float32", max_total_tokens=500) as eng:
            assert eng.core.runner.model.decode_stack is None
            assert eng.core.runner.kernels["decode_stack"] == "per layer"
    monkeypatch.setenv("RADIXGEN_NO_QUANT_STACK", "1")
    with radixgen.Engine(model=llama, quantization="int4", dtype="float32", max_total_tokens=500) as eng:
        assert eng.core.runner.model.decode_stack is None
        assert len(eng.generate(input_ids=[[5, 6, 7]], sampling_params={"max_new_tokens": 3})[0]["output_ids"]) > 0


def test_kv_cache_dtype_bf16_under_an_fp32_model_stays_close(tmp_path, bundled_dir) -> None:
    """kv_cache_dtype: auto is bf16 under block-quantized linears and the model dtype otherwise; an
    explicit bf16 cache under a float model runs every attention path (the streaming kernel, SDPA
    for long prefills, the torch reference) and its logprobs stay within bf16 rounding of fp32's."""
    model_dir = _save("llama", tmp_path, bundled_dir)
    ids = [_prompts()[2] + list(range(300, 340))]  # 82 tokens: one prefill long enough for SDPA
    params = {"temperature": 0, "max_new_tokens": 6, "min_new_tokens": 6}
    logprobs = {}
    for kv, backend in (("auto", "cpu"), ("bfloat16", "cpu"), ("bfloat16", "reference")):
        with radixgen.Engine(model=model_dir, dtype="float32", max_total_tokens=1000, kv_cache_dtype=kv,
                             attention_backend=backend) as eng:
            assert eng.core.runner.kernels["kv_cache"] == ("float32" if kv == "auto" else "bfloat16")
            out = eng.generate(input_ids=ids, sampling_params=params, return_logprob=True, logprob_start_len=0)[0]
            logprobs[kv, backend] = torch.tensor([lp[0] for lp in out["meta_info"]["input_token_logprobs"][1:]])
    for key in (("bfloat16", "cpu"), ("bfloat16", "reference")):
        torch.testing.assert_close(logprobs[key], logprobs["auto", "cpu"], rtol=0.02, atol=0.05)
    with pytest.raises(ValueError, match="kv_cache_dtype"):
        radixgen.Engine(model=model_dir, kv_cache_dtype="float16")
