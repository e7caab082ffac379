"""Every registered family against transformers, token for token: tiny random models built from
transformers' own config classes, saved with save_pretrained, run by radixgen's real engine (paged
KV, radix cache on, several requests batched, chunked prefill in 16-token chunks), float32 greedy.
Prompts run past every sliding window, and the second round hits the radix cache."""
from __future__ import annotations

import pytest
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

import radixgen

COMMON = dict(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
              initializer_range=0.3, eos_token_id=2, bos_token_id=1, pad_token_id=0)
WINDOW = 16
LLAMA3_ROPE = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 32}

FAMILIES = {
    "llama": lambda: transformers.LlamaConfig(**COMMON, tie_word_embeddings=True),
    "llama3-rope": lambda: transformers.LlamaConfig(**{**COMMON, "eos_token_id": [2, 5]},
                                                    rope_parameters=LLAMA3_ROPE, tie_word_embeddings=False),
    "qwen2": lambda: transformers.Qwen2Config(**COMMON, tie_word_embeddings=False),
    "qwen3": lambda: transformers.Qwen3Config(**COMMON, head_dim=32, tie_word_embeddings=True),
    "mistral": lambda: transformers.MistralConfig(**COMMON, sliding_window=WINDOW, tie_word_embeddings=False),
    "gemma3_text": lambda: transformers.Gemma3TextConfig(
        **{**COMMON, "num_hidden_layers": 4}, head_dim=32, query_pre_attn_scalar=24, sliding_window=WINDOW,
        layer_types=["sliding_attention", "full_attention", "sliding_attention", "sliding_attention"],
        rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                         "full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e6}}),
    "phi3": lambda: transformers.Phi3Config(**COMMON, sliding_window=WINDOW + 4, tie_word_embeddings=False),
    # caps well inside the scores' and logits' range (the checkpoints' 50 / 30 barely bend random ones)
    "gemma2": lambda: transformers.Gemma2Config(
        **{**COMMON, "num_hidden_layers": 4}, head_dim=32, query_pre_attn_scalar=24, sliding_window=WINDOW,
        attn_logit_softcapping=1.0, final_logit_softcapping=3.0),
}
NEW_TOKENS = 10


@pytest.fixture(scope="module")
def tokenizer(bundled_dir):
    return AutoTokenizer.from_pretrained(bundled_dir)


def save_tiny(name: str, path, tokenizer) -> AutoModelForCausalLM:
    config = FAMILIES[name]()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    # one family saved in shards (model.safetensors.index.json + several files), as large models are
    model.save_pretrained(path, **({"max_shard_size": "4MB"} if name == "qwen2" else {}))
    tokenizer.save_pretrained(path)
    return model


def prompts() -> list[list[int]]:
    """Shared 20-token prefix (radix hits across requests), lengths 5 to 75: past the window of 16."""
    gen = torch.Generator().manual_seed(1)
    ids = lambda n: torch.randint(100, 49000, (n,), generator=gen).tolist()  # noqa: E731
    shared = ids(20)
    return [ids(5), shared + ids(3), shared + ids(30), ids(75), shared + ids(55)]


def hf_argmax_path(model, prompt: list[int], output: list[int], eos: list[int]) -> list[int]:
    """Teacher forcing: transformers' argmax (EOS banned) after each prefix of prompt + output. Equal to
    `output` iff transformers' greedy generate writes `output` (see test_parity.py)."""
    with torch.no_grad():
        logits = model(torch.tensor([prompt + output])).logits[0].float()
    logits = logits[len(prompt) - 1: -1]
    logits[:, eos] = float("-inf")
    return logits.argmax(-1).tolist()


# A case takes 5-20 s on the shared 2-core machine: Mistral (sliding window, chunks, radix hits) runs
# in the fast suite, the other families with the slow ones.
PARITY_CASES = [name if name == "mistral" else pytest.param(name, marks=pytest.mark.slow) for name in FAMILIES]


@pytest.mark.parametrize("name", PARITY_CASES)
def test_family_greedy_tokens_match_transformers(name, tmp_path, tokenizer):
    model = save_tiny(name, tmp_path, tokenizer)
    if name == "qwen2":
        assert len(list(tmp_path.glob("*.safetensors"))) > 1
    eos = model.generation_config.eos_token_id
    eos = eos if isinstance(eos, list) else [eos]
    params = {"temperature": 0, "max_new_tokens": NEW_TOKENS, "min_new_tokens": NEW_TOKENS}
    # one thread: these matmuls are tiny, and two OpenMP threads on a busy shared machine wait on each other
    with radixgen.Engine(model=str(tmp_path), dtype="float32", chunked_prefill_size=16, max_total_tokens=4000,
                         skip_warmup=True, num_threads=1) as engine:
        assert set(eos) <= engine.core.eos_ids
        for round_ in range(2):  # the second round's prompts are in the radix cache
            outs = engine.generate(input_ids=prompts(), sampling_params=params)
            for prompt, out in zip(prompts(), outs):
                assert len(out["output_ids"]) == NEW_TOKENS
                assert hf_argmax_path(model, prompt, out["output_ids"], eos) == out["output_ids"], (name, round_)
            if round_:
                assert sum(o["meta_info"]["cached_tokens"] for o in outs) > 0
        engine.check()


@pytest.mark.slow
@pytest.mark.parametrize("backend, chunk", [("reference", 16), ("cpu", 64)])
def test_gemma2_softcap_on_every_cpu_attention_path(backend, chunk, tmp_path, tokenizer):
    """Soft-capped attention through the torch reference, and through the C++ kernel with extends
    longer than the ones it streams by default (SDPA cannot soft-cap: they must not go there)."""
    model = save_tiny("gemma2", tmp_path, tokenizer)
    params = {"temperature": 0, "max_new_tokens": NEW_TOKENS, "min_new_tokens": NEW_TOKENS}
    with radixgen.Engine(model=str(tmp_path), dtype="float32", chunked_prefill_size=chunk, max_total_tokens=4000,
                         skip_warmup=True, num_threads=1, attention_backend=backend) as engine:
        outs = engine.generate(input_ids=prompts(), sampling_params=params)
    for prompt, out in zip(prompts(), outs):
        assert hf_argmax_path(model, prompt, out["output_ids"], [2]) == out["output_ids"], backend


def longrope_phi3() -> transformers.Phi3Config:
    """Phi-4-mini's shape in small: longrope switching at 32 tokens, 3/4 of each head rotated."""
    gen = torch.Generator().manual_seed(3)
    rope = {"rope_type": "longrope", "rope_theta": 1e4, "partial_rotary_factor": 0.75,
            "original_max_position_embeddings": 32,  # 16-dim heads, 12 rotated: 6 factors each
            "short_factor": (1 + torch.rand(6, generator=gen)).tolist(),
            "long_factor": (2 + 4 * torch.rand(6, generator=gen)).tolist()}
    return transformers.Phi3Config(**COMMON, tie_word_embeddings=True, partial_rotary_factor=0.75,
                                   original_max_position_embeddings=32, rope_parameters=rope)


@pytest.mark.slow
def test_phi3_longrope_partial_rotary_matches_transformers_generate(tmp_path, tokenizer):
    """Short prompts (short factors), long ones (long factors from their first 16-token chunk), and
    short ones that decode past 32 tokens, where transformers' generate recomputes the whole cache
    with the long factors (we retract and recompute): greedy tokens equal generate's, cold and with the
    short prompts' prefix from the radix cache (the long ones must not reuse its short-mode KV)."""
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(longrope_phi3(), dtype=torch.float32).eval()
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    gen = torch.Generator().manual_seed(1)
    ids = lambda n: torch.randint(100, 49000, (n,), generator=gen).tolist()  # noqa: E731
    shared = ids(20)
    batch = [ids(5), shared + ids(3), shared + ids(8), ids(27), shared + ids(30), ids(75)]  # 5 .. 75 tokens
    want = [model.generate(torch.tensor([p]), do_sample=False, max_new_tokens=NEW_TOKENS,
                           min_new_tokens=NEW_TOKENS)[0, len(p):].tolist() for p in batch]
    params = {"temperature": 0, "max_new_tokens": NEW_TOKENS, "min_new_tokens": NEW_TOKENS}
    with radixgen.Engine(model=str(tmp_path), dtype="float32", chunked_prefill_size=16, max_total_tokens=4000,
                         skip_warmup=True, num_threads=1) as engine:
        for round_ in range(2):
            outs = engine.generate(input_ids=batch, sampling_params=params)
            assert [o["output_ids"] for o in outs] == want, round_
            if round_:
                assert sum(o["meta_info"]["cached_tokens"] for o in outs) > 0
        # prompt logprobs, a finer check than argmaxes: short factors for 27 tokens, long for 75
        outs = engine.generate(input_ids=batch[3:], return_logprob=True, logprob_start_len=0,
                               sampling_params={"temperature": 0, "max_new_tokens": 1})
        engine.check()
    for prompt, out in zip(batch[3:], outs):
        ours = torch.tensor([lp for lp, _, _ in out["meta_info"]["input_token_logprobs"][1:]])
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([prompt])).logits[0], dim=-1)
        torch.testing.assert_close(ours, logp[torch.arange(len(prompt) - 1), torch.tensor(prompt[1:])],
                                   atol=1e-4, rtol=1e-5)


REFUSED = [
    (lambda: transformers.GPT2Config(), "model type 'gpt2' is not supported"),
    (lambda: transformers.LlamaConfig(**COMMON, rope_parameters={"rope_type": "dynamic", "factor": 2.0,
                                                                "rope_theta": 1e4}), "'dynamic'"),
    (lambda: transformers.LlamaConfig(**COMMON, rope_parameters={
        "rope_type": "longrope", "rope_theta": 1e4, "short_factor": [1.0] * 8, "long_factor": [2.0] * 8,
        "original_max_position_embeddings": 256}), "'longrope'"),
    (lambda: transformers.LlamaConfig(**COMMON, partial_rotary_factor=0.5), "partial rotary"),
    (lambda: transformers.Gemma2Config(**COMMON, use_bidirectional_attention=True), "bidirectional"),
    (lambda: transformers.Gemma3Config(), "multimodal Gemma 3"),
    (lambda: transformers.Gemma3TextConfig(**COMMON, attn_logit_softcapping=50.0), "soft-capping"),
]


@pytest.mark.parametrize("make_config, message", REFUSED)
def test_unsupported_models_are_refused_naming_the_feature(make_config, message):
    from radixgen.runtime.models import registry

    with pytest.raises(ValueError, match=message):
        registry.build_arch(make_config())


def test_engine_refuses_an_unknown_model_type(tmp_path, tokenizer):
    transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="model type 'gpt2' is not supported"):
        radixgen.Engine(model=str(tmp_path), skip_warmup=True)


@pytest.mark.slow  # bf16 is emulated on AVX2-only CPUs: ~10 s a family there
@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_bf16_prompt_logprobs_close_to_float32(name, tmp_path, tokenizer):
    """bf16 (the dtype of AMX machines; emulated on others): the prompt's logprobs, through 16-token
    chunks and past the window, stay within bf16's rounding of transformers' float32 ones."""
    model = save_tiny(name, tmp_path, tokenizer)
    prompt = prompts()[3]  # 75 tokens
    with radixgen.Engine(model=str(tmp_path), dtype="bfloat16", chunked_prefill_size=16, max_total_tokens=2000,
                         skip_warmup=True) as engine:
        out = engine.generate(input_ids=prompt, return_logprob=True, logprob_start_len=0,
                              sampling_params={"temperature": 0, "max_new_tokens": 1})
    ours = torch.tensor([lp for lp, _, _ in out["meta_info"]["input_token_logprobs"][1:]])
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([prompt])).logits[0].float(), dim=-1)
    ref = logp[torch.arange(len(prompt) - 1), torch.tensor(prompt[1:])]
    err = (ours - ref).abs() / ref.abs().clamp(min=1.0)  # relative; logprobs here are ~ -14 on average
    # measured on AMD EPYC Zen 3 (AVX2): max 0.4-2.9%, mean 0.15-0.46% over the families
    assert float(err.max()) < 0.06 and float(err.mean()) < 0.01, (name, float(err.max()), float(err.mean()))
