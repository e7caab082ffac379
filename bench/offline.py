"""The seed workload: chat requests (system "You are a helpful assistant. Respond in two sentences." +
a distinct short question), greedy, max_new_tokens=128. transformers' batched generate (left padding,
one batch per 64 requests, same weights / dtype / threads, the very token ids) against radixgen, in
one run: radixgen at every size first, then (its engine shut down) transformers.

    python bench/offline.py [--dtype bfloat16|float32] [--sizes 4,8,16,32,64,256] [--skip-hf]

Prints a table and writes bench/results/offline.{json,png}.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

import radixgen
from hf_baseline import hf_generate, in_own_thread  # bench/hf_baseline.py, beside this script
from radixgen.cli import seed_messages

RESULTS = Path(__file__).parent / "results"


def run_hf(model, prompts: list[list[int]], eos_id: int, max_new: int) -> tuple[float, int]:
    start = time.perf_counter()
    outs = hf_generate(model, prompts, eos_id, max_new)
    return time.perf_counter() - start, sum(map(len, outs))


def run_radixgen(engine: radixgen.Engine, convs: list, max_new: int) -> tuple[float, int]:
    params = {"temperature": 0, "max_new_tokens": max_new}
    start = time.perf_counter()
    outs = engine.chat(convs, params)
    return time.perf_counter() - start, sum(o["meta_info"]["completion_tokens"] for o in outs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--sizes", default="4,8,16,32,64,256")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--skip-hf", action="store_true")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads, both systems")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    torch.set_num_threads(args.threads)
    engine = radixgen.Engine(dtype=args.dtype, num_threads=args.threads)
    engine.chat(seed_messages(4), {"temperature": 0, "max_new_tokens": 8})  # warm up
    dtype, model_dir, eos = engine.core.runner.dtype, engine.model_path, engine.tokenizer.eos_token_id
    # transformers gets the very token ids radixgen's chat template makes
    prompts = {n: [engine.apply_chat_template(c) for c in seed_messages(n)] for n in sizes}
    rows = []
    for n in sizes:
        engine.flush_cache()  # every size starts cold: no reuse of an earlier size's prompts
        rg_s, rg_tok = run_radixgen(engine, seed_messages(n), args.max_new_tokens)
        rows.append({"requests": n, "rg_s": rg_s, "rg_tok": rg_tok, "rg_tok_s": rg_tok / rg_s})
        print(f"{n:>5} reqs  radixgen {rg_s:7.2f} s {rg_tok / rg_s:7.1f} tok/s", flush=True)
    # One system at a time in the process: the engine's thread (and its OpenMP team) ends first,
    # then transformers runs on a thread of its own (see hf_baseline.in_own_thread).
    engine.shutdown()
    if not args.skip_hf:
        from transformers import AutoModelForCausalLM
        model = in_own_thread(lambda: AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).eval())
    for r in rows:
        n = r["requests"]
        hf_s, hf_tok = (float("nan"), 0) if args.skip_hf else in_own_thread(
            run_hf, model, prompts[n], eos, args.max_new_tokens)
        r.update(hf_s=hf_s, hf_tok=hf_tok, hf_tok_s=hf_tok / hf_s if hf_tok else float("nan"),
                 speedup=hf_s / r["rg_s"])
        print(f"{n:>5} reqs  HF {hf_s:7.2f} s {r['hf_tok_s']:7.1f} tok/s | x{r['speedup']:.2f}", flush=True)
    print(f"\nseed workload, {dtype}, greedy, max_new_tokens={args.max_new_tokens}, {torch.get_num_threads()} threads")
    print("| requests | HF generate s | HF tok/s | radixgen s | radixgen tok/s | speed-up |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['requests']} | {r['hf_s']:.2f} | {r['hf_tok_s']:.1f} | {r['rg_s']:.2f} | {r['rg_tok_s']:.1f} | "
              f"{r['speedup']:.2f}x |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "offline.json").write_text(json.dumps({"dtype": str(dtype), "rows": rows}, indent=2))
    plot(rows, str(dtype))


def plot(rows: list[dict], dtype: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r["requests"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(n, [r["rg_tok_s"] for r in rows], "o-", label="radixgen")
    ax.plot(n, [r["hf_tok_s"] for r in rows], "s--", label="transformers generate")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrent chat requests")
    ax.set_ylabel("generated tokens / s")
    ax.set_title(f"seed workload, {dtype}, greedy, 128 new tokens")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "offline.png", dpi=120)


if __name__ == "__main__":
    main()
