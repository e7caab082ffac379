"""The seed workload: chat requests (system "You are a helpful assistant. Respond in two sentences." +
a distinct short question), greedy, max_new_tokens=128. transformers' batched generate (left padding,
one batch per 64 requests, same weights / dtype / threads, the very token ids) against radixgen, in
one run. Each size is a pair of runs close in time: radixgen on a fresh engine, then (that engine
shut down, so one system at a time holds the cores) transformers. With --repeat N the sizes are run
N times and the table gives medians: on this shared machine either system's time moves by +-30%
over minutes, so one pair's ratio says little on its own.

    python bench/offline.py [--model PATH|gemma3-270m] [--dtype auto|bfloat16|float32] [--sizes 4,8,16,32,64,256]
                            [--skip-hf] [--repeat N] [--quantization auto|none|int8|int4]

Defaults are the engine's: on a CPU with AMX / AVX512-BF16 both systems run bf16; elsewhere fp32,
radixgen on the GGUF's own blocks (each system in its best precision for the CPU).

Prints a table and writes bench/results/offline.{json,png} (offline-<model>.{json,png} with --model).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

import radixgen
from hf_baseline import hf_generate, in_own_thread  # bench/hf_baseline.py, beside this script
from radixgen.cli import seed_messages

RESULTS = Path(__file__).parent / "results"


def run_hf(model, prompts: list[list[int]], eos_ids: list[int], max_new: int) -> tuple[float, int]:
    start = time.perf_counter()
    outs = hf_generate(model, prompts, eos_ids, max_new)
    return time.perf_counter() - start, sum(map(len, outs))


def run_radixgen(engine: radixgen.Engine, convs: list, max_new: int) -> tuple[float, int]:
    params = {"temperature": 0, "max_new_tokens": max_new}
    start = time.perf_counter()
    outs = engine.chat(convs, params)
    return time.perf_counter() - start, sum(o["meta_info"]["completion_tokens"] for o in outs)


def radixgen_fresh(args: argparse.Namespace, n: int) -> tuple[tuple[float, int], dict]:
    """n requests on a fresh engine, then shut down: (seconds, tokens) and what transformers needs."""
    engine = radixgen.Engine(args.model, dtype=args.dtype, num_threads=args.threads, quantization=args.quantization)
    engine.chat(seed_messages(4), {"temperature": 0, "max_new_tokens": 8})  # warm up
    engine.flush_cache()  # the run starts cold: no reuse of the warm-up's prompts
    # transformers gets the very token ids radixgen's chat template makes
    # the same stop ids as radixgen's (Gemma 3 ends a turn with <end_of_turn>, not only <eos>)
    eos = [engine.tokenizer.eos_token_id] + sorted(engine.core.eos_ids - {engine.tokenizer.eos_token_id})
    info = {"dtype": engine.core.runner.dtype, "model_dir": engine.model_path, "eos": eos,
            "prompts": [engine.apply_chat_template(c) for c in seed_messages(n)]}
    run = run_radixgen(engine, seed_messages(n), args.max_new_tokens)
    print(f"{n:>5} reqs  radixgen {run[0]:7.2f} s {run[1] / run[0]:7.1f} tok/s", flush=True)
    # One system at a time in the process: the engine's thread (and its OpenMP team) ends first,
    # then transformers runs on a thread of its own (see hf_baseline.in_own_thread).
    engine.shutdown()
    return run, info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="HF dir, .gguf file or packaged name (default: bundled SmolLM2)")
    ap.add_argument("--dtype", default="auto", help="radixgen's (and so transformers') dtype; auto: the engine's pick")
    ap.add_argument("--sizes", default="4,8,16,32,64,256")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--skip-hf", action="store_true")
    ap.add_argument("--quantization", default="auto",
                    help="radixgen's weights (auto, the engine's default: a GGUF's own blocks on a CPU running "
                         "fp32, else float); transformers runs the float model")
    ap.add_argument("--repeat", type=int, default=1,
                    help="rounds over the sizes; the table gives medians and each round's speed-up")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads, both systems")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    torch.set_num_threads(args.threads)
    rg: list[list[tuple[float, int]]] = []
    hf: list[list[tuple[float, int]]] = []
    model = None
    for rnd in range(args.repeat):
        rg.append([])
        if not args.skip_hf:
            hf.append([])
        for n in sizes:  # each size a pair of runs close in time: radixgen, then transformers
            rg_run, info = radixgen_fresh(args, n)
            rg[-1].append(rg_run)
            if args.skip_hf:
                continue
            if model is None:
                from transformers import AutoModelForCausalLM
                model = in_own_thread(lambda: AutoModelForCausalLM.from_pretrained(info["model_dir"], dtype=info["dtype"]).eval())
            hf[-1].append(in_own_thread(run_hf, model, info["prompts"], info["eos"], args.max_new_tokens))
            print(f"{n:>5} reqs  HF {hf[-1][-1][0]:7.2f} s | x{hf[-1][-1][0] / rg_run[0]:.2f}  (round {rnd + 1})", flush=True)
    rows = [summarize(n, [r[i] for r in rg], [h[i] for h in hf]) for i, n in enumerate(sizes)]
    print(f"\nseed workload on {args.model or 'SmolLM2-135M'}, {info['dtype']}, radixgen quantization "
          f"{args.quantization}, greedy, max_new_tokens={args.max_new_tokens}, "
          f"{torch.get_num_threads()} threads, {args.repeat} round(s): medians")
    print("| requests | HF generate s | HF tok/s | radixgen s | radixgen tok/s | speed-up | per-round speed-ups |")
    print("|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        spread = ", ".join(f"{x:.2f}" for x in r["speedups"])
        print(f"| {r['requests']} | {r['hf_s']:.2f} | {r['hf_tok_s']:.1f} | {r['rg_s']:.2f} | {r['rg_tok_s']:.1f} | "
              f"{r['speedup']:.2f}x | {spread} |")
    RESULTS.mkdir(exist_ok=True)
    stem = "offline" if args.model is None else f"offline-{Path(args.model).stem}"
    stem += "" if args.quantization == "none" else f"-{args.quantization}"
    (RESULTS / f"{stem}.json").write_text(json.dumps({"dtype": str(info["dtype"]), "model": args.model,
                                                      "rows": rows}, indent=2))
    plot(rows, str(info["dtype"]), stem)


def summarize(n: int, rg: list[tuple[float, int]], hf: list[tuple[float, int]]) -> dict:
    """Medians over rounds; the speed-up is the median of the per-round ratios (each pair of runs
    close in time, so a slow spell of the shared machine tends to hit both)."""
    med = lambda xs: statistics.median(xs) if xs else float("nan")  # noqa: E731
    speedups = [h[0] / r[0] for r, h in zip(rg, hf)]
    rg_s, hf_s = med([r[0] for r in rg]), med([h[0] for h in hf])
    return {"requests": n, "rg_s": rg_s, "rg_tok_s": med([r[1] / r[0] for r in rg]), "hf_s": hf_s,
            "hf_tok_s": med([h[1] / h[0] for h in hf]), "speedup": med(speedups), "speedups": speedups}


def plot(rows: list[dict], dtype: str, stem: str) -> None:
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
    fig.savefig(RESULTS / f"{stem}.png", dpi=120)


if __name__ == "__main__":
    main()
