"""Perplexity of the bundled SmolLM2-135M on a fixed text, per weight mode, through the real engine
(prompt logprobs), beside llama.cpp (llama-cpp-python, the bench extra) on the same GGUF file and the
same token ids (issue #17: int8 within 1% of bf16).

    python bench/perplexity.py [--modes fp32,bf16,int8,int4,auto,llama.cpp] [--window 512]
                               [--small-chunk 16] [--threads N] [--quick]

Text: bench/data/ppl.txt (a public-domain US government report, 4,074 tokens; bench/data/README.md).
Windows: the ids cut into consecutive windows of --window tokens (stride = window, no overlap; the
last one shorter), each scored alone from an empty cache: every token but a window's first is
predicted from the tokens before it in its window; ppl = exp(-mean log p) over all of them.
Modes: fp32 and bf16 are the float model (dtype float32 / bfloat16, quantization none; bf16 is
emulated, slowly, on CPUs without AVX512-BF16 / AMX); int8 / int4 / auto are the block-quantized
linears (runtime/models/block_quant.py) in float32. Two columns per engine mode: the default prefill
chunk (2048 tokens: a window in one forward) and chunked_prefill_size = --small-chunk (forwards of
at most 16 rows: the one-call decoder stack that decode steps run). Where the CPU has AVX2 both run
the panel kernel (int8 activations, as llama.cpp's); elsewhere the one-chunk column multiplies fp32
tiles dequantized from the blocks. Each mode runs in a fresh process.
Prints a table and writes bench/results/perplexity.json.
"""
from __future__ import annotations

import argparse
import json
import math
import os

import torch

from _common import RESULTS, emit_row, installed, run_child, text_ids  # bench/, beside this script
from quant import cpu_kind

MODES = {"fp32": ("none", "float32"), "bf16": ("none", "bfloat16"), "int8": ("int8", "float32"),
         "int4": ("int4", "float32"), "auto": ("auto", "float32")}


def windows(n: int, window: int) -> list[tuple[int, int]]:
    """[start, end) of consecutive windows over n ids (stride = window); a last piece of one id
    predicts nothing and is dropped."""
    spans = [(s, min(s + window, n)) for s in range(0, n, window)]
    return [(s, e) for s, e in spans if e - s >= 2]


def perplexity(window_logprobs: list[list[float]]) -> tuple[float, int]:
    """(exp(-mean log p), tokens scored) over every scored token of every window."""
    lps = [lp for w in window_logprobs for lp in w]
    return math.exp(-sum(lps) / len(lps)), len(lps)


def target_logprobs(logits: torch.Tensor, ids: list[int]) -> list[float]:
    """logits [n, vocab] of a window's n ids -> the n-1 log p(ids[i] | ids[:i]), i = 1..n-1."""
    logp = torch.log_softmax(logits[:-1].float(), dim=-1)                    # [n-1, vocab]
    return logp.gather(1, torch.tensor(ids[1:])[:, None]).squeeze(1).tolist()


def engine_logprobs(mode: str, chunk: int, pieces: list[list[int]], threads: int) -> list[list[float]]:
    import radixgen
    quant, dtype = MODES[mode]
    with radixgen.Engine(quantization=quant, dtype=dtype, num_threads=threads, chunked_prefill_size=chunk,
                         max_total_tokens=sum(map(len, pieces)) + 64) as engine:
        outs = engine.generate(input_ids=pieces, return_logprob=True, logprob_start_len=0,
                               sampling_params={"temperature": 0, "max_new_tokens": 1})
    scored = []
    for ids, out in zip(pieces, outs):
        entries = out["meta_info"]["input_token_logprobs"]  # (logprob, id, text); the first has no logprob
        assert [t for _, t, _ in entries] == ids, "the engine scored other ids than it was given"
        scored.append([lp for lp, _, _ in entries[1:]])
    return scored


def llama_cpp_logprobs(pieces: list[list[int]], threads: int) -> list[list[float]]:
    import llama_cpp
    from radixgen.runtime.model_loader import bundled_gguf
    n = max(map(len, pieces))
    llm = llama_cpp.Llama(model_path=str(bundled_gguf()), n_ctx=n, n_batch=n, n_ubatch=n, logits_all=True,
                          n_threads=threads, n_threads_batch=threads, verbose=False)
    scored = []
    for ids in pieces:
        llm.reset()  # an empty cache: each window alone, as the engine scores it
        llm.eval(ids)
        scored.append(target_logprobs(torch.from_numpy(llm.scores[: len(ids)].copy()), ids))
    return scored


def one_mode(mode: str, args: argparse.Namespace) -> dict:
    ids = text_ids()[: args.max_tokens]
    pieces = [ids[s:e] for s, e in windows(len(ids), args.window)]
    if mode == "llama.cpp":
        import llama_cpp
        ppl, n = perplexity(llama_cpp_logprobs(pieces, args.threads))
        return {"mode": f"llama.cpp {llama_cpp.__version__} (same Q4_1 file)", "ppl": ppl, "tokens": n}
    ppl, n = perplexity(engine_logprobs(mode, 2048, pieces, args.threads))
    row = {"mode": mode, "ppl": ppl, "tokens": n}
    if args.small_chunk:
        row["ppl_small_chunk"] = perplexity(engine_logprobs(mode, args.small_chunk, pieces, args.threads))[0]
    return row


def table(rows: list[dict], args: argparse.Namespace) -> str:
    ref = {r["mode"]: r["ppl"] for r in rows}
    chunk = f"ppl, {args.small_chunk}-token prefill chunks" if args.small_chunk else None
    lines = [f"| mode | ppl, {args.window}-token windows in one chunk | vs bf16 | vs fp32 |"
             + (f" {chunk} | vs bf16 | vs fp32 |" if chunk else ""),
             "|---|---:|---:|---:|" + ("---:|---:|---:|" if chunk else "")]

    def cells(p: float | None) -> str:
        if p is None:
            return " - | - | - |"
        return "".join([f" {p:.3f} |"] + [f" {p / ref[b]:.4f} |" if b in ref else " - |" for b in ("bf16", "fp32")])
    for r in rows:
        lines.append(f"| {r['mode']} |" + cells(r["ppl"]) + (cells(r.get("ppl_small_chunk")) if chunk else ""))
    return "\n".join(lines) + ("\n\nvs bf16 / vs fp32: to the float models' one-chunk figures (fp32's does not depend"
                               " on the chunk; bf16's rounding does)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modes", default="fp32,bf16,int8,int4,auto,llama.cpp")
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--small-chunk", type=int, default=16, help="0: skip the small-chunk column")
    ap.add_argument("--max-tokens", type=int, default=None, help="score only the text's first N ids")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 windows of 64 tokens")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # child: one mode, its row as JSON
    args = ap.parse_args()
    for name, small in (("window", 64), ("max_tokens", 128)) if args.quick else ():
        if getattr(args, name) == ap.get_default(name):  # --quick shrinks what was not given
            setattr(args, name, small)
    torch.set_num_threads(args.threads)
    if args.one:
        emit_row(one_mode(args.one, args))
        return
    n_ids = len(text_ids()[: args.max_tokens])
    spans = windows(n_ids, args.window)
    head = (f"SmolLM2-135M perplexity on bench/data/ppl.txt: {n_ids} ids, {len(spans)} windows of <= {args.window} "
            f"(stride {args.window}), {n_ids - len(spans)} tokens scored | {cpu_kind()} | {args.threads} threads")
    print(head, flush=True)
    child = ["--window", str(args.window), "--small-chunk", str(args.small_chunk), "--threads", str(args.threads)]
    child += ["--max-tokens", str(args.max_tokens)] if args.max_tokens else []
    rows = []
    for mode in installed(args.modes.split(",")):
        if mode != "llama.cpp" and mode not in MODES:
            raise SystemExit(f"unknown mode {mode!r}: pick from {', '.join([*MODES, 'llama.cpp'])}")
        rows.append(run_child(__file__, ["--one", mode, *child]))
        print(rows[-1], flush=True)
    print("\n" + head + "\n" + table(rows, args))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "perplexity.json").write_text(json.dumps(
        {"header": head, "window": args.window, "small_chunk": args.small_chunk, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
