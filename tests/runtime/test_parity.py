"""Our Llama implementation against transformers' on the same weights (bundled SmolLM2, float32)."""
from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

PROMPTS = [
    "What is the capital of France?", "Write a haiku about the sea.", "How do I reverse a list in Python?",
    "Explain gravity to a child.", "Give me three tips for better sleep.", "What is 17 times 23?",
    "Translate 'good morning' into Spanish.", "Who wrote Romeo and Juliet?", "Describe a cat in one sentence.",
    "What causes rain?", "List the planets of the solar system.", "Write a limerick about a programmer.",
    "Why is the sky blue?", "What is a prime number?", "Summarize the plot of Cinderella.",
    "How do vaccines work?", "Suggest a name for a bakery.", "What is the boiling point of water?",
    "Tell me a joke about computers.", "What does HTTP stand for?",
]
NEW_TOKENS = 64


@pytest.fixture(scope="module")
def hf_model(engine_fp32):
    return AutoModelForCausalLM.from_pretrained(engine_fp32.model_path, dtype=torch.float32).eval()


def test_greedy_tokens_and_prompt_logprobs_match_transformers(engine_fp32, hf_model):
    engine_fp32.flush_cache()
    ids = [engine_fp32.apply_chat_template([{"role": "user", "content": p}]) for p in PROMPTS]
    # min_new_tokens bans EOS exactly like transformers' min_new_tokens, so both run 64 steps.
    outs = engine_fp32.generate(input_ids=ids, return_logprob=True, logprob_start_len=0,
                                sampling_params={"temperature": 0, "max_new_tokens": NEW_TOKENS,
                                                 "min_new_tokens": NEW_TOKENS})
    eos = [i for i in {hf_model.generation_config.eos_token_id, engine_fp32.tokenizer.eos_token_id} if i is not None]
    for prompt_ids, out in zip(ids, outs):
        # Teacher forcing: one forward over prompt + our output. Greedy decoding is the sequence
        # whose every token is the argmax given what precedes it, so if transformers' argmax (EOS
        # banned, as min_new_tokens does) is our token at every output position, its generate()
        # writes our tokens; one forward instead of 64 decode steps (the test took 2 min).
        seq = prompt_ids + out["output_ids"]
        with torch.no_grad():
            logits = hf_model(torch.tensor([seq])).logits[0].float()
        gen_logits = logits[len(prompt_ids) - 1: -1].clone()
        gen_logits[:, eos] = float("-inf")
        assert len(out["output_ids"]) == NEW_TOKENS
        assert gen_logits.argmax(-1).tolist() == out["output_ids"]
        logp = torch.log_softmax(logits[: len(prompt_ids)], dim=-1)
        ref_lp = [logp[p - 1, prompt_ids[p]].item() for p in range(1, len(prompt_ids))]
        ours = out["meta_info"]["input_token_logprobs"]
        assert ours[0][0] is None and ours[0][1] == prompt_ids[0]
        assert [t for _, t, _ in ours] == prompt_ids
        assert max(abs(a - b[0]) for a, b in zip(ref_lp, ours[1:])) < 1e-3
    stats = engine_fp32.get_stats()
    assert stats["kv_locked"] == 0 and stats["kv_free"] + stats["kv_evictable"] == stats["kv_capacity"]
    engine_fp32.check()
