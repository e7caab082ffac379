"""The measuring parts of bench/perplexity.py and bench/decode.py: the shipped text, the windowing
and perplexity arithmetic, and llama.cpp's batched decode path against its own high-level API."""
from __future__ import annotations

import importlib
import math
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def bench():
    """bench/ modules import their siblings by plain name, as when run as scripts."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(BENCH))
        yield importlib.import_module


def test_shipped_text_is_a_few_thousand_tokens(bench, bundled_dir) -> None:
    ids = bench("_common").text_ids()
    assert 3000 <= len(ids) <= 5000
    assert 512 * 7 < len(ids)  # the default 512-token windows: at least 7 full ones


def test_windows_score_every_token_but_each_window_start_once(bench) -> None:
    windows = bench("perplexity").windows
    assert windows(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert windows(9, 4) == [(0, 4), (4, 8)]  # a 1-id tail predicts nothing
    for n, w in ((4074, 512), (100, 7), (5, 5)):
        spans = windows(n, w)
        scored = [p for s, e in spans for p in range(s + 1, e)]
        assert len(scored) == len(set(scored))
        assert set(scored) == {p for p in range(n) if p % w}  # a dropped 1-id tail is a window start too


def test_perplexity_of_known_logprobs(bench) -> None:
    ppl = bench("perplexity")
    # a model uniform over V tokens has perplexity V, however the tokens fall into windows
    assert ppl.perplexity([[-math.log(50)] * 3, [-math.log(50)] * 5]) == (pytest.approx(50), 8)
    assert ppl.perplexity([[math.log(0.5)], [math.log(0.125)]])[0] == pytest.approx(4)  # exp(mean(ln 2, ln 8))
    logits = torch.tensor([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0], [5.0, 5.0, 5.0]])  # [n=3, vocab=3]
    lps = ppl.target_logprobs(logits, [9, 2, 0])  # scored: id 2 after row 0, id 0 after row 1
    assert lps == pytest.approx([math.log(1 / 3), 1 - math.log(math.e + math.e ** 2 + math.e ** 3)])


@pytest.mark.slow  # loads the GGUF in llama.cpp and decodes 2 x 2 x 12 tokens (1 thread: 2 spinning ones stall on a busy machine)
def test_llama_cpp_batched_decode_is_its_high_level_greedy(bench, bundled_dir) -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    from radixgen.runtime.model_loader import bundled_gguf
    decode, ids = bench("decode"), bench("_common").text_ids()
    prompts = decode.pieces(ids, 2, 32)
    batched = decode.LlamaCppBatch(threads=1, max_new=12)
    outs, ttft, rest = batched.run(prompts, 12)
    assert ttft > 0 and rest > 0
    llm = llama_cpp.Llama(model_path=str(bundled_gguf()), n_ctx=256, n_threads=1, verbose=False)
    for prompt, out in zip(prompts, outs):
        ref = []
        for tok in llm.generate(prompt, top_k=1, temp=0.0, repeat_penalty=1.0, reset=True):
            ref.append(tok)
            if len(ref) == 12:
                break
        assert out == ref
