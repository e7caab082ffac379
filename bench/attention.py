"""Paged attention on the CPU: the C++ kernel (radixgen.kernels.cpu) against the torch reference
(gather a padded K/V copy + scaled_dot_product_attention), for decode and extend, with SmolLM2's
attention shapes (9 query heads, 3 kv heads, head dim 64, bf16 pool). Where CUDA exists the Triton
kernels are timed on the GPU as well.

    python bench/attention.py [--batches 1,16,64] [--lengths 128,160,512,1000,4096] [--page-size 1]
                              [--threads N]

Decode: each request has `length` tokens of context (its new token's K/V included). Extend: a
chunked prefill under a 4096-token budget, each request `length` tokens long of which the last
min(length, 4096 / batch) are new. "step share" puts a decode step's attention (all layers) beside
the same step's linear layers (timed here as prepacked bf16 matmuls of SmolLM2's shapes at that
batch); "KV GB/s" is the rate decode attention reads the KV cache at, to set beside the machine's
memory read speed (printed at the end): where they meet, only a smaller KV can go faster.
Prints a table and writes bench/results/attention.{json,png}.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from radixgen.kernels import cpu, reference
from radixgen.runtime.models.llama import Linear, can_prepack
from radixgen.kernels.testing import meta_to, random_meta, random_pools

RESULTS = Path(__file__).parent / "results"
EXTEND_BUDGET = 4096
# SmolLM2-135M: hidden 576, MLP 1536, 9 heads of 64 (3 kv heads), 30 layers, vocab 49152
HIDDEN, MLP, VOCAB = 576, 1536, 49152


def timeit(fn, budget_s: float = 0.3, max_reps: int = 20) -> float:
    """Best of a few runs after one warm-up, in ms (the machine is shared: the minimum is the
    least disturbed)."""
    fn()
    best, spent, reps = math.inf, 0.0, 0
    while reps < 2 or (spent < budget_s and reps < max_reps):
        start = time.perf_counter()
        fn()
        took = time.perf_counter() - start
        best, spent, reps = min(best, took), spent + took, reps + 1
    return best * 1e3


def linear_ms(batch: int, layers: int) -> float:
    """One decode step's linear layers at `batch` tokens, bf16, prepacked as the engine runs them:
    qkv, o, gate+up, down, lm head."""
    x = torch.randn(batch, HIDDEN, dtype=torch.bfloat16)
    h = torch.randn(batch, MLP, dtype=torch.bfloat16)
    lin = {}
    for name, (o, i) in {"qkv": (HIDDEN + 2 * 192, HIDDEN), "o": (HIDDEN, HIDDEN),
                         "gate_up": (2 * MLP, HIDDEN), "down": (HIDDEN, MLP), "head": (VOCAB, HIDDEN)}.items():
        lin[name] = Linear(i, o, bias=False).to(torch.bfloat16)
        if can_prepack(torch.device("cpu"), torch.bfloat16):
            lin[name].pack()

    @torch.inference_mode()
    def step() -> None:
        for _ in range(layers):
            lin["qkv"](x), lin["o"](x), lin["gate_up"](x), lin["down"](h)
        lin["head"](x)
    return timeit(step, budget_s=0.5, max_reps=5)


def read_gb_s() -> float:
    """The machine's memory read speed as torch sees it: one fp32 sum over 512 MB, best of a few
    (a bf16 sum or matvec ran slower here, so this is the higher bar)."""
    x = torch.ones(128 << 20, dtype=torch.float32)
    return x.numel() * 4 / timeit(lambda: x.sum(), budget_s=1.0, max_reps=5) / 1e6


def problem(batch: int, length: int, decode: bool, args, device: str = "cpu"):
    new = 1 if decode else min(length, max(1, EXTEND_BUDGET // batch))
    meta, slots = random_meta([length - new] * batch, [new] * batch, args.page_size)
    k_pool, v_pool = random_pools(slots, args.kv_heads, args.head_dim, torch.bfloat16)
    q = torch.randn(batch * new, args.heads, args.head_dim, dtype=torch.bfloat16)
    return q.to(device), k_pool.to(device), v_pool.to(device), meta_to(meta, device), new


def cuda_ms(fn) -> float:
    import triton.testing
    return triton.testing.do_bench(fn, warmup=5, rep=50)


def run(args) -> list[dict]:
    rows = []
    scale = 1 / math.sqrt(args.head_dim)
    for batch in args.batches:
        lin = args.linear_step_ms or linear_ms(batch, args.layers)
        for length in args.lengths:
            for mode in ("decode", "extend"):
                q, kp, vp, meta, new = problem(batch, length, mode == "decode", args)
                name = f"{mode}_attention"
                row = {"mode": mode, "batch": batch, "length": length, "new": new,
                       "cpu_ms": timeit(lambda: getattr(cpu, name)(q, kp, vp, meta, scale)),
                       "ref_ms": timeit(lambda: getattr(reference, name)(q, kp, vp, meta, scale))}
                if mode == "decode":  # K and V of every context token, read once per kv head
                    row["kv_gb_s"] = batch * length * 2 * args.kv_heads * args.head_dim * 2 / row["cpu_ms"] / 1e6
                    attn = args.layers * row["cpu_ms"]
                    row["step_share"] = attn / (attn + lin)
                    row["linear_step_ms"] = lin
                if torch.cuda.is_available():
                    from radixgen.kernels import triton_attention
                    q, kp, vp, meta, _ = problem(batch, length, mode == "decode", args, "cuda")
                    row["triton_ms"] = cuda_ms(lambda: getattr(triton_attention, name)(q, kp, vp, meta, scale))
                    row["ref_cuda_ms"] = cuda_ms(lambda: getattr(reference, name)(q, kp, vp, meta, scale))
                rows.append(row)
                print_row(row)
    return rows


def print_row(row: dict) -> None:
    share = (f"{row['step_share']:>9.0%} {row['kv_gb_s']:>8.1f}" if "step_share" in row
             else f"{'':>9} {'':>8}")
    gpu = (f"  triton {row['triton_ms']:7.3f}  ref-cuda {row['ref_cuda_ms']:7.3f}"
           if "triton_ms" in row else "")
    print(f"{row['mode']:>7} {row['batch']:>5} {row['length']:>6} {row['new']:>5} "
          f"{row['cpu_ms']:9.3f} {row['ref_ms']:9.3f} {row['ref_ms'] / row['cpu_ms']:7.1f}x {share}{gpu}",
          flush=True)


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib
    import matplotlib.ticker
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, mode in zip(axes, ("decode", "extend")):
        for i, batch in enumerate(sorted({r["batch"] for r in rows})):
            sel = [r for r in rows if r["mode"] == mode and r["batch"] == batch]
            x = [r["length"] for r in sel]
            ax.plot(x, [r["cpu_ms"] for r in sel], "o-", color=f"C{i}", label=f"B={batch} C++ kernel")
            ax.plot(x, [r["ref_ms"] for r in sel], "x--", color=f"C{i}", label=f"B={batch} reference")
        lengths = sorted({r["length"] for r in rows})
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(lengths, [str(n) for n in lengths], rotation=45)
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set(xlabel="tokens per request", ylabel="ms per layer", title=f"{mode} attention")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ints = lambda s: [int(x) for x in s.split(",")]  # noqa: E731
    parser.add_argument("--batches", type=ints, default=[1, 16, 64])
    parser.add_argument("--lengths", type=ints, default=[128, 160, 512, 1000, 4096])
    parser.add_argument("--page-size", type=int, default=1)
    parser.add_argument("--heads", type=int, default=9)
    parser.add_argument("--kv-heads", type=int, default=3)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--layers", type=int, default=30)
    parser.add_argument("--linear-step-ms", type=float, default=None,
                        help="a decode step's linear-layer time to set attention beside, instead of "
                             "timing SmolLM2-shaped F.linear calls here")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch (and kernel) threads; 1 is steadier on a shared machine")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not cpu.is_available():
        raise SystemExit("the C++ kernel did not build here; nothing to compare")
    title = (f"H={args.heads} KVH={args.kv_heads} D={args.head_dim} bf16, page size {args.page_size}, "
             f"{torch.get_num_threads()} threads")
    print(title)
    print(f"{'mode':>7} {'batch':>5} {'length':>6} {'new':>5} {'cpu ms':>9} {'ref ms':>9} "
          f"{'speedup':>8} {'step share':>9} {'KV GB/s':>8}")
    rows = run(args)
    bandwidth = read_gb_s()
    print(f"memory read speed here (torch fp32 sum over 512 MB, {torch.get_num_threads()} threads): "
          f"{bandwidth:.1f} GB/s; decode attention streams the KV at the rate in 'KV GB/s'")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "attention.json").write_text(json.dumps({"config": title, "read_gb_s": bandwidth,
                                                        "rows": rows}, indent=1))
    plot(rows, RESULTS / "attention.png", title)
    print(f"wrote {RESULTS / 'attention.json'} and {RESULTS / 'attention.png'}")


if __name__ == "__main__":
    main()
