"""Quantized linears: PyTorch's kernels (models/quant.py) against a reference dequant matmul, the
fallback, Q4_1 blocks held exactly by int4; the engine generating with each mode (int8 / int4 / auto
over our block kernels, models/block_quant.py), auto keeping the GGUF's own weights bit for bit,
and each mode's agreement with fp32 on the bundled model."""
from __future__ import annotations

import logging

import pytest
import torch

import radixgen
from radixgen.runtime.config import EngineConfig
from radixgen.kernels import cpu_quant
from radixgen.runtime.models import quant
from radixgen.runtime.models.block_quant import BlockQuantEmbedding, BlockQuantLinear
from radixgen.runtime.models.quant import QuantLinear, dequantize_int4, quantize_int4, quantize_int8

KERNELS = [("int8", "int8pack"), ("int8", "dequant"), ("int4", "int4pack"), ("int4", "dequant"),
           ("int8-dynamic", "fbgemm"), ("int8-dynamic", "dequant")]


def _reference(mode: str, w: torch.Tensor) -> torch.Tensor:
    if mode == "int4":
        return dequantize_int4(*quantize_int4(w))
    q, scale = quantize_int8(w)
    return q.float() * scale[:, None]


@pytest.mark.parametrize("mode,kernel", KERNELS)
@pytest.mark.parametrize("rows", [1, 7, 64])
def test_quant_linear_matches_dequantized_matmul(mode: str, kernel: str, rows: int) -> None:
    torch.manual_seed(rows)
    w, b, x = torch.randn(96, 128) * 0.05, torch.randn(96), torch.randn(rows, 128)
    layer = QuantLinear(w, b, mode, kernel)
    assert layer.kernel == kernel
    wd = _reference(mode, w)
    torch.testing.assert_close(layer.dequantized(), wd, rtol=0, atol=1e-6)
    ref = x @ wd.T + b
    err = ((layer(x) - ref).norm() / ref.norm()).item()
    # fbgemm also quantizes the activations (7 bits, one scale): ~1% off; weight-only kernels are exact.
    assert err < (0.03 if kernel == "fbgemm" else 1e-5)
    assert layer(x.bfloat16()).dtype == torch.bfloat16
    assert layer(x[:0]).shape == (0, 96)
    # the quantization itself: int8 within half a step per channel, int4 within half a step per group
    assert ((wd - w).abs().amax(1) <= w.abs().amax(1) / 127 * 0.5 + 1e-6).all() if mode != "int4" else True


def test_missing_kernel_falls_back_to_dequantized_float(monkeypatch, caplog) -> None:
    def missing(*args, **kwargs):
        raise RuntimeError("not built")
    monkeypatch.setattr(torch, "_weight_int8pack_mm", missing)
    w, x = torch.randn(32, 64), torch.randn(3, 64)
    with caplog.at_level(logging.WARNING, logger="radixgen"):
        layer = QuantLinear(w, None, "int8")
    assert layer.kernel == "dequant" and "fallback" in caplog.text
    torch.testing.assert_close(layer(x), x @ _reference("int8", w).T)


def test_int4_holds_q4_1_blocks_exactly() -> None:
    """GGUF Q4_1: per 32 weights an fp16 scale d and min m, w = d * q + m, q in 0..15 with 0 and 15
    both used (ggml's min/max quantization). int4 must give back the very same floats."""
    torch.manual_seed(0)
    n, blocks = 16, 6
    d = (torch.rand(n, blocks) * 0.02 + 1e-3).half().float()
    m = (-torch.rand(n, blocks) * 0.1).half().float()
    q = torch.randint(0, 16, (n, blocks, 32))
    q[..., 0], q[..., 1] = 0, 15
    w = (d[..., None] * q + m[..., None]).reshape(n, blocks * 32)
    back = dequantize_int4(*quantize_int4(w))
    assert (back - w).abs().max().item() <= 1e-6 * w.abs().max().item()


@pytest.mark.slow
def test_int4_holds_bundled_q4_1_weights_exactly(bundled_dir: str) -> None:
    from pathlib import Path
    from radixgen.runtime.model_loader import load_state_dict
    state = load_state_dict(Path(bundled_dir))
    layers = [w for k, w in state.items() if ".layers." in k and w.dim() == 2]
    assert len(layers) == 30 * 7
    for w in layers:
        assert (dequantize_int4(*quantize_int4(w)) - w).abs().max().item() <= 1e-6 * w.abs().max().item()


def test_config_and_cli_take_quantization() -> None:
    import argparse
    from radixgen.runtime.config import add_cli_args, from_cli_args
    assert EngineConfig().quantization == "auto"
    assert EngineConfig(quantization="none").quantization == "none"
    with pytest.raises(ValueError, match="quantization"):
        EngineConfig(quantization="int3")
    parser = argparse.ArgumentParser()
    add_cli_args(parser)
    assert from_cli_args(parser.parse_args(["--quantization", "int4"])).quantization == "int4"


def test_auto_resolves_to_the_gguf_blocks_only_where_they_pay() -> None:
    """The default: a GGUF's blocks on a CPU running fp32, one rank; float for an HF checkpoint, a
    bf16 CPU (AMX tiles), CUDA, tensor-parallel ranks."""
    from radixgen.runtime.model_runner import pick_quantization
    cpu, f32 = torch.device("cpu"), torch.float32
    expect = "block:auto" if cpu_quant.is_available() else "none"
    assert pick_quantization("auto", cpu, f32, 1, gguf=True) == expect
    assert pick_quantization("auto", cpu, f32, 1, gguf=False) == "none"
    assert pick_quantization("auto", cpu, torch.bfloat16, 1, gguf=True) == "none"
    assert pick_quantization("auto", cpu, f32, 2, gguf=True) == "none"
    assert pick_quantization("auto", torch.device("cuda"), f32, 1, gguf=True) == "none"
    assert pick_quantization("none", cpu, f32, 1, gguf=True) == "none"


@pytest.mark.parametrize("mode", ["int8", "int4", "int8-dynamic"])
def test_engine_generates_with_quantized_linears(tiny_dir: str, mode: str) -> None:
    with radixgen.Engine(model=tiny_dir, quantization=mode, max_total_tokens=2000, dtype="float32") as eng:
        model = eng.core.runner.model
        head, qkv = model.lm_head, model.layers[0].self_attn.qkv_proj
        if mode == "int8-dynamic" or not cpu_quant.is_available():
            assert isinstance(head, QuantLinear) and head.mode == ("int8" if mode == "int4" else mode)
        else:  # our block kernels; the LM head stays 8-bit with int4, as GGUF files keep it
            assert isinstance(head, BlockQuantLinear) and head.weight_q.fmt == "Q8_0"
            assert qkv.weight_q.fmt == ("Q4_1" if mode == "int4" else "Q8_0")
        assert eng.core.runner.kernels["quantization"].startswith(mode)
        outs = eng.generate(["Hello there", "One two three"], {"temperature": 0, "max_new_tokens": 8,
                                                              "min_new_tokens": 8})
        assert [len(o["output_ids"]) for o in outs] == [8, 8]
        eng.check()


PARITY_PROMPTS = ["What is the capital of France?", "Write a haiku about the sea.",
                  "How do I reverse a list in Python?"]
PARITY_TOKENS = 48
# Measured (bench machine, AVX2): fp32 teacher-forced against its own decode agrees on 0.98 of tokens
# (prefill and decode round differently near ties); int8 weight-only on 0.93 (2 prompts x 64) and
# 0.951 (these 3 prompts x 48); int4 (int8 LM head) on 0.94 (2 x 64). Our block kernels (q8
# activations), 5 prompts x 48: auto and int4 (the very same Q4_1 / Q8_0 blocks) 0.988, int8 0.967,
# while prompts multiplied fp32 tiles. Since every row count runs the panel kernel (int8 activations
# in prefill too, as llama.cpp's), these 3 prompts x 48: 0.938 for each mode.
MIN_AGREEMENT = {"int8": 0.88, "int4": 0.88, "auto": 0.9}


@pytest.mark.parametrize("mode", ["int8", "int4", "auto"])
def test_weight_only_agrees_with_fp32_teacher_forced(engine_fp32, mode: str) -> None:
    """Greedy fp32 outputs, fed back as the prompt of the quantized engine: how often is its top-1 the
    fp32 token at each output position (the test_parity method, without 48 slow decode steps)."""
    ids = [engine_fp32.apply_chat_template([{"role": "user", "content": p}]) for p in PARITY_PROMPTS]
    params = {"temperature": 0, "max_new_tokens": PARITY_TOKENS, "min_new_tokens": PARITY_TOKENS}
    outs = [o["output_ids"] for o in engine_fp32.generate(input_ids=ids, sampling_params=params)]
    with radixgen.Engine(quantization=mode, dtype="float32", max_total_tokens=4000) as eng:
        res = eng.generate(input_ids=[i + o for i, o in zip(ids, outs)], return_logprob=True,
                           logprob_start_len=0, top_logprobs_num=1,
                           sampling_params={"temperature": 0, "max_new_tokens": 1})
    agree = 0
    for prompt, out, r in zip(ids, outs, res):
        top = r["meta_info"]["input_top_logprobs"][len(prompt): len(prompt) + len(out)]
        agree += sum(t[0][1] == tok for t, tok in zip(top, out))
    rate = agree / (len(outs) * PARITY_TOKENS)
    print(f"{mode} teacher-forced top-1 agreement with fp32: {rate:.3f}")
    assert rate >= MIN_AGREEMENT[mode]


@pytest.mark.slow
@pytest.mark.skipif(not cpu_quant.is_available(), reason="the CPU kernel library could not be built")
def test_auto_keeps_the_gguf_weights_exactly(engine_fp32) -> None:
    """auto multiplies by the GGUF's own blocks: dequantized, each layer's weight is bit for bit the
    weight the fp32 engine runs (transformers' dequantization of the same file, q/k rows reordered)."""
    ref = engine_fp32.core.runner.model
    with radixgen.Engine(quantization="auto", dtype="float32", max_total_tokens=2000) as eng:
        model = eng.core.runner.model
        assert "block:auto" in eng.core.runner.kernels["quantization"]
        assert isinstance(model.embed_tokens, BlockQuantEmbedding)
        ids = torch.tensor([0, 5, 49151, 1234])
        assert torch.equal(model.embed_tokens(ids), ref.embed_tokens(ids))
        pairs = [(model.lm_head, ref.lm_head)]
        for ours, theirs in zip(model.layers, ref.layers):
            pairs += [(ours.self_attn.qkv_proj, theirs.self_attn.qkv_proj), (ours.mlp.down_proj, theirs.mlp.down_proj),
                      (ours.self_attn.o_proj, theirs.self_attn.o_proj), (ours.mlp.gate_up_proj, theirs.mlp.gate_up_proj)]
        for ours, theirs in pairs:
            assert isinstance(ours, BlockQuantLinear)
            assert torch.equal(ours.dequantized(), theirs.weight.float())
        assert {m.weight_q.fmt for m, _ in pairs} == {"Q4_1", "Q8_0"}  # the bundled file's own formats


@pytest.mark.slow
@pytest.mark.skipif(not cpu_quant.is_available(), reason="the CPU kernel library could not be built")
@pytest.mark.parametrize("scalar", [False, True], ids=["simd", "forced-scalar"])
def test_auto_greedy_decode_matches_fp32(engine_fp32, monkeypatch: pytest.MonkeyPatch, scalar: bool) -> None:
    """Free-running greedy decode, auto against fp32 (tokens until the first difference). Measured
    (AMD EPYC Zen 3, AVX2, 2 threads) on these 3 prompts, 24 tokens: 21 / 8 / 24 identical (SIMD),
    17 / 8 / 24 (scalar: float sums in another order). Not asserted: "What is the capital of
    France?" (left out) differed at its first token once (a near tie the q8 activations flip); the
    5 prompts x 48 tokens ran 17 / 8 / 19 / 28 identical on the other four. Asserted: at least 4
    identical tokens on 2 of the 3."""
    if scalar:
        monkeypatch.setenv("RADIXGEN_QUANT_SCALAR", "1")
    prompts = PARITY_PROMPTS[1:] + ["Give me three tips for better sleep."]
    ids = [engine_fp32.apply_chat_template([{"role": "user", "content": p}]) for p in prompts]
    params = {"temperature": 0, "max_new_tokens": 24, "min_new_tokens": 24}
    ref = [o["output_ids"] for o in engine_fp32.generate(input_ids=ids, sampling_params=params)]
    with radixgen.Engine(quantization="auto", dtype="float32", max_total_tokens=2000) as eng:
        assert eng.core.runner.kernels["quant_kernel"] == cpu_quant.kernel_path()
        assert (eng.core.runner.model.lm_head.panels is None) == scalar
        outs = [o["output_ids"] for o in eng.generate(input_ids=ids, sampling_params=params)]
    same = [next((i for i, (a, b) in enumerate(zip(o, r)) if a != b), len(r)) for o, r in zip(outs, ref)]
    print(f"auto ({'scalar' if scalar else 'simd'}) identical greedy prefix vs fp32: {same} of 24")
    assert sum(s >= 4 for s in same) >= 2
