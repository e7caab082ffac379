"""Sampling and stop conditions through the engine (tiny model), plus the sampler's own rules."""
from __future__ import annotations

import pytest
import torch

import radixgen
from radixgen.runtime.loop_guard import MAX_ESCAPES, is_looping, loop_period
from radixgen.runtime.request import Req
from radixgen.runtime.sampler import _top_k_top_p, apply_loop_bans, apply_penalties, sample
from radixgen.runtime.sampling_params import SamplingParams

PROMPT = list(range(500, 540))


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    with radixgen.Engine(tiny_dir, dtype="float32", max_total_tokens=4000) as eng:
        yield eng


def _gen(engine, **sp):
    return engine.generate(input_ids=PROMPT, sampling_params={"max_new_tokens": 16, **sp})


def test_seed_reproducible_and_seeds_differ(tiny):
    a = _gen(tiny, temperature=1.0, seed=7, ignore_eos=True)
    b = _gen(tiny, temperature=1.0, seed=7, ignore_eos=True)
    c = _gen(tiny, temperature=1.0, seed=8, ignore_eos=True)
    assert a["output_ids"] == b["output_ids"] and a["output_ids"] != c["output_ids"]


def test_top_k_1_is_greedy_and_n_expands(tiny):
    greedy = _gen(tiny, temperature=0, ignore_eos=True)
    assert _gen(tiny, temperature=1.5, top_k=1, ignore_eos=True)["output_ids"] == greedy["output_ids"]
    # A temperature that overflows logits / T (the fuzz test's 4e-293) is greedy, not NaN -> token 0.
    assert _gen(tiny, temperature=4e-293, ignore_eos=True)["output_ids"] == greedy["output_ids"]
    outs = _gen(tiny, temperature=1.0, n=3, seed=1, ignore_eos=True)
    assert len(outs) == 3 and len({tuple(o["output_ids"]) for o in outs}) > 1


def test_stop_token_ids_max_and_min_new_tokens(tiny):
    greedy = _gen(tiny, temperature=0, ignore_eos=True)["output_ids"]
    stop_at = greedy[5]
    k = greedy.index(stop_at)
    out = _gen(tiny, temperature=0, ignore_eos=True, stop_token_ids=[stop_at])
    assert out["output_ids"] == greedy[: k + 1]
    assert out["meta_info"]["finish_reason"] == {"type": "stop", "matched": stop_at}
    longer = _gen(tiny, temperature=0, ignore_eos=True, stop_token_ids=[stop_at], min_new_tokens=k + 3)
    assert len(longer["output_ids"]) >= k + 3 and stop_at not in longer["output_ids"][: k + 2]
    assert _gen(tiny, temperature=0, max_new_tokens=3, ignore_eos=True)["meta_info"]["finish_reason"] == \
        {"type": "length", "length": 3}


def test_stop_string_trimmed_unless_asked(tiny):
    full = _gen(tiny, temperature=0, ignore_eos=True)["text"]
    stop = full[len(full) // 2: len(full) // 2 + 3]
    assert stop.strip(), "need a visible stop string"
    out = _gen(tiny, temperature=0, ignore_eos=True, stop=[stop])
    assert out["meta_info"]["finish_reason"] == {"type": "stop", "matched": stop}
    assert stop not in out["text"] and full.startswith(out["text"])
    kept = _gen(tiny, temperature=0, ignore_eos=True, stop=stop, no_stop_trim=True)
    assert kept["text"].endswith(stop)


def test_logprobs_and_top_alternatives(tiny):
    out = tiny.generate(input_ids=PROMPT, sampling_params={"max_new_tokens": 4, "temperature": 0, "ignore_eos": True},
                        return_logprob=True, top_logprobs_num=3, logprob_start_len=30)
    meta = out["meta_info"]
    assert [t for _, t, _ in meta["output_token_logprobs"]] == out["output_ids"]
    for (lp, tok, _), top in zip(meta["output_token_logprobs"], meta["output_top_logprobs"]):
        assert len(top) == 3 and top[0][1] == tok and abs(top[0][0] - lp) < 1e-6  # greedy = the top-1
    assert [t for _, t, _ in meta["input_token_logprobs"]] == PROMPT[30:]
    assert all(lp is not None and lp <= 0 for lp, _, _ in meta["input_token_logprobs"])


def test_max_new_tokens_zero_is_prefill_only(tiny):
    out = tiny.generate(input_ids=PROMPT, sampling_params={"max_new_tokens": 0}, return_logprob=True,
                        logprob_start_len=0)
    assert out["output_ids"] == [] and out["meta_info"]["finish_reason"]["type"] == "length"
    assert len(out["meta_info"]["input_token_logprobs"]) == len(PROMPT)


def test_streaming_yields_deltas_that_add_up(tiny):
    chunks = list(tiny.generate(input_ids=PROMPT, sampling_params={"max_new_tokens": 12, "temperature": 0,
                                                                   "ignore_eos": True}, stream=True))
    whole = _gen(tiny, temperature=0, ignore_eos=True, max_new_tokens=12)
    assert len(chunks) > 1 and chunks[-1]["meta_info"]["finish_reason"] is not None
    assert sum((c["output_ids"] for c in chunks), []) == whole["output_ids"]
    assert "".join(c["text"] for c in chunks) == whole["text"]


def _req(**sp) -> Req:
    return Req("r", [1, 2, 3], SamplingParams(**sp))


def test_top_k_top_p_keep_the_right_tokens():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]] * 2)  # float32, like the kept values below
    out = _top_k_top_p(probs, [SamplingParams(top_k=2), SamplingParams(top_p=0.7)])
    kept = torch.tensor([0.5, 0.3, 0.0, 0.0])
    assert torch.equal(out[0], kept)
    assert torch.equal(out[1], kept)  # 0.5 < 0.7, 0.8 >= 0.7: the nucleus is two tokens


def test_penalties_and_min_p():
    logits = torch.tensor([[2.0, 1.0, -1.0, 0.5]])
    req = _req(frequency_penalty=0.5, presence_penalty=0.25)
    req.output_ids = [0, 0, 3]
    apply_penalties(logits, [req], [[]])
    assert torch.allclose(logits, torch.tensor([[2.0 - 1.0 - 0.25, 1.0, -1.0, 0.5 - 0.5 - 0.25]]))
    rep = torch.tensor([[2.0, 1.0, -1.0, 0.5]])
    apply_penalties(rep, [_req(repetition_penalty=2.0)], [[]])  # prompt [1, 2, 3]
    assert torch.allclose(rep, torch.tensor([[2.0, 0.5, -2.0, 0.25]]))
    g = torch.Generator().manual_seed(0)
    picks = {int(sample(torch.tensor([[3.0, 0.0, 2.9, -5.0]]), [_req(temperature=1.0, min_p=0.5)], g))
             for _ in range(50)}
    assert picks <= {0, 2}


def test_stream_never_sends_text_a_stop_string_later_trims(tiny):
    full = _gen(tiny, temperature=0, ignore_eos=True)["text"]
    stop = full[len(full) // 2: len(full) // 2 + 4]
    chunks = list(tiny.generate(input_ids=PROMPT, stream=True,
                                sampling_params={"max_new_tokens": 16, "temperature": 0, "ignore_eos": True,
                                                 "stop": [stop]}))
    whole = _gen(tiny, temperature=0, ignore_eos=True, stop=[stop])
    assert "".join(c["text"] for c in chunks) == whole["text"] and stop not in whole["text"]


def test_bad_stop_type_is_a_value_error():
    with pytest.raises(ValueError, match="stop"):
        SamplingParams(stop=5)


def test_sampler_pins_a_failure_on_its_row():
    """A row whose processing raises (here a logit_bias id past the vocabulary, which the engine
    refuses at the door) fails alone: the other rows get the tokens they get without it, bias
    applied once, and the failing row is reported with the reason."""
    from radixgen.kernels import reference
    from radixgen.runtime.sampler import Sampler
    torch.manual_seed(0)
    logits = torch.randn(3, 50)
    gap = float(logits[0].max() - logits[0, 7])  # a bias of 0.75 gap keeps the max; applied twice, 7 wins
    good = [_req(temperature=0, logit_bias={7: 0.75 * gap}), _req(temperature=0, logit_bias={}), _req(temperature=0)]
    bad = _req(temperature=0, logit_bias={10 ** 6: 1.0})
    sampler = Sampler(reference, torch.Generator().manual_seed(0))
    alone = sampler(logits.clone(), good, lambda r: []).tokens
    out = sampler(torch.cat([logits[:1], logits[1:2], logits[1:2], logits[2:]]).clone(),
                  [good[0], bad, good[1], good[2]], lambda r: [])
    assert list(out.errors) == [1] and "IndexError" in out.errors[1]
    assert [t for i, t in enumerate(out.tokens) if i != 1] == alone and alone[0] != 7


def test_is_looping_needs_three_repeats_within_the_window():
    assert is_looping([1, 2, 3] + [7] * 9, 8)                  # period 1
    assert is_looping([9] + [4, 5, 6] * 4, 8)                  # period 3 over 8 + 3 tokens
    assert not is_looping([9] + [4, 5, 6] * 3, 8)              # 9 tokens: one short of window + period
    assert not is_looping(list(range(40)), 8)
    assert not is_looping([1, 2, 3, 4, 5] * 2 + [1, 2, 3], 8)  # period 5 > window // 2


def test_loop_guard_ends_a_loop_early_and_changes_nothing_before(tiny):
    """A logit bias makes token 77 win (nearly) every step: unguarded the output runs to
    max_new_tokens; guarded it ends as soon as the repeat fills the window, with the same tokens."""
    loop = {"temperature": 0, "ignore_eos": True, "max_new_tokens": 200, "logit_bias": {77: 30.0}}
    free = _gen(tiny, **loop)
    assert is_looping(free["output_ids"], 16), "the premise: the unguarded output ends in a cycle"
    guarded = _gen(tiny, **loop, loop_guard=16)
    reason = guarded["meta_info"]["finish_reason"]
    assert reason["type"] == "length" and reason["loop"] is True
    n = len(guarded["output_ids"])
    assert n < 200 and guarded["output_ids"] == free["output_ids"][:n]
    with pytest.raises(ValueError, match="loop_guard must be 0"):
        SamplingParams(loop_guard=3).validate()


def test_loop_guard_escape_bans_the_token_that_carries_the_loop_on(tiny):
    """With the "escape" action, every time the last 16 tokens repeat the next token is not the
    one the cycle would bring; after MAX_ESCAPES escapes the request ends as with "length"."""
    loop = {"temperature": 0, "ignore_eos": True, "max_new_tokens": 1000, "logit_bias": {77: 30.0}}
    out = _gen(tiny, **loop, loop_guard=16, loop_guard_action="escape")
    ids = out["output_ids"]
    escapes = [k for k in range(len(ids) + 1) if loop_period(ids[:k], 16)]
    assert len(escapes) == MAX_ESCAPES + 1  # the last detection ends it
    assert all(ids[k] != ids[k - loop_period(ids[:k], 16)] for k in escapes[:-1])
    assert out["meta_info"]["finish_reason"]["loop"] is True and len(ids) < 1000
    with pytest.raises(ValueError, match="loop_guard_action must be one of length, escape"):
        SamplingParams(loop_guard=16, loop_guard_action="skip").validate()


def test_loop_ban_never_empties_a_row():
    logits = torch.tensor([[0.0, float("-inf"), float("-inf")], [0.0, 1.0, float("-inf")]])
    reqs = [_req(temperature=0), _req(temperature=0)]
    reqs[0].loop_ban, reqs[1].loop_ban = 0, 1     # row 0: the grammar allows token 0 only
    apply_loop_bans(logits, reqs)
    assert logits[0, 0] == 0.0 and logits[1, 1] == float("-inf") and logits[1, 0] == 0.0


def test_unset_fields_take_the_model_defaults_and_set_ones_win() -> None:
    sp = SamplingParams(temperature=1.0, max_tokens=5)
    filled = sp.with_defaults({"temperature": 0.6, "top_p": 0.9, "top_k": 20})
    assert (filled.temperature, filled.top_p, filled.top_k, filled.max_new_tokens) == (1.0, 0.9, 20, 5)
    assert filled.replace(seed=3).with_defaults({"temperature": 0.2}).temperature == 1.0  # replace keeps what was set
    assert SamplingParams().with_defaults({"temperature": 0.6}).temperature == 0.6


@pytest.mark.parametrize("defaults", ["model", "openai"])
def test_generation_config_sampling_is_the_default(tiny_dir, tmp_path, defaults) -> None:
    """A model whose generation_config.json asks for top_k 1 decodes greedily when a request sets no
    sampling, as with SGLang's --sampling-defaults model and vLLM; "openai" ignores the file."""
    import shutil

    from transformers import GenerationConfig
    model_dir = shutil.copytree(tiny_dir, tmp_path / "model")
    GenerationConfig(eos_token_id=2, do_sample=True, top_k=1, temperature=0.7).save_pretrained(model_dir)
    with radixgen.Engine(str(model_dir), dtype="float32", max_total_tokens=2000, sampling_defaults=defaults) as eng:
        assert eng.sampling_defaults == ({"top_k": 1, "temperature": 0.7} if defaults == "model" else {})
        greedy = _gen(eng, temperature=0, ignore_eos=True)["output_ids"]
        unset = [_gen(eng, seed=s, ignore_eos=True)["output_ids"] for s in (1, 2)]
        explicit = _gen(eng, seed=1, top_k=-1, ignore_eos=True)["output_ids"]  # a request's own value wins
    assert (unset == [greedy, greedy]) == (defaults == "model")
    assert explicit != greedy
