"""Quantized linears (issue #17) side by side, in one run: the kernels on SmolLM2-135M's shapes, and
the engine per quantization mode (each in a fresh child process, so resident memory is its own),
beside llama.cpp (llama-cpp-python, the bench extra) decoding the same GGUF file.

    python bench/quant.py [--modes none,auto,int8,int4,llama.cpp] [--seed-modes none,auto]
                          [--kernels] [--threads N] [--tokens 128]

Engine rows: batch-1 greedy decode of one chat prompt (`--tokens` new tokens, EOS banned, prefill
included; llama.cpp gets the same prompt token ids and runs on as many threads), and the seed workload of bench/offline.py (64 chat prompts, greedy, up to 128 new tokens)
for the modes in --seed-modes (--seed-requests / --seed-tokens shrink it on a busy machine; a scalar
kernel at 64 rows would take many minutes on AVX2). RSS:
the child's resident memory after loading (VmRSS) and its peak (VmHWM). Speed ratios, not absolute
numbers, are what carries over on a shared machine: the modes run back to back.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

SHAPES = [("qkv", 960, 576), ("o", 576, 576), ("gate_up", 3072, 576), ("down", 576, 1536), ("lm_head", 49152, 576)]


def cpu_kind() -> str:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "?")
    flags = next((ln for ln in info.splitlines() if ln.startswith("flags")), "").split()
    has = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{name}, {os.cpu_count()} cpus, {'+'.join(has)}, torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()})"


def best_us(fn, rounds: int = 5, span: float = 0.02) -> float:
    """Best of `rounds` mean times over ~span seconds each (noise on a shared machine only adds)."""
    fn()
    best = float("inf")
    for _ in range(rounds):
        start, n = time.perf_counter(), 0
        while n == 0 or time.perf_counter() - start < span:
            fn()
            n += 1
        best = min(best, (time.perf_counter() - start) / n)
    return best * 1e6


def kernels(rows: list[int], torch_kernels: bool) -> None:
    from radixgen.kernels import cpu_quant
    from radixgen.runtime.models.block_quant import BlockQuantLinear
    from radixgen.runtime.models.quant import QuantLinear
    torch_cols = (("int8", "int8pack"), ("int4", "int4pack"), ("int8-dynamic", "fbgemm")) if torch_kernels else ()
    print(f"| layer N x K | rows | fp32 us | Q4_1 ours ({cpu_quant.kernel_path()}) | Q8_0 ours | "
          + "".join(f"{m} ({kern}) | " for m, kern in torch_cols))
    print("|---|---:|---:|---:|---:|" + "---:|" * len(torch_cols))
    for name, n, k in SHAPES:
        w = torch.randn(n, k) * 0.05
        layers = [BlockQuantLinear(cpu_quant.quantize(w, f), None) for f in ("Q4_1", "Q8_0")]
        layers += [QuantLinear(w, None, m, kern) for m, kern in torch_cols]
        for m in rows:
            x = torch.randn(m, k)
            base = best_us(lambda: F.linear(x, w))
            # the scalar kernels at many rows take ~0.1-7 s a call: fewer, shorter rounds
            cells = [best_us(lambda: layer(x), rounds=2 if m > 8 else 5, span=0.0) for layer in layers]
            print(f"| {name} {n}x{k} | {m} | {base:.0f} | "
                  + " | ".join(f"{c:.0f} (x{base / c:.2f})" for c in cells) + " |", flush=True)


def rss_mb() -> tuple[float, float]:
    """(VmRSS, VmHWM) in MB, after handing freed heap back to the OS (glibc keeps what the load freed:
    the state dict, and with quantization the float weights)."""
    import ctypes
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    status = dict(ln.split(":", 1) for ln in Path("/proc/self/status").read_text().splitlines() if ":" in ln)
    return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


def llama_cpp_row(tokens: int, threads: int) -> dict:
    """Batch-1 greedy decode of the same prompt ids on llama.cpp, EOS ignored (tokens exactly)."""
    import llama_cpp
    from transformers import AutoTokenizer
    from radixgen.cli import seed_messages
    from radixgen.runtime.config import EngineConfig
    from radixgen.runtime.model_loader import bundled_gguf, resolve_model_dir
    tok = AutoTokenizer.from_pretrained(resolve_model_dir(None, EngineConfig().cache_dir))
    ids = tok.apply_chat_template(seed_messages(1)[0], add_generation_prompt=True, tokenize=True)
    ids = list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)
    llm = llama_cpp.Llama(model_path=str(bundled_gguf()), n_ctx=2048, n_threads=threads, n_threads_batch=threads,
                          seed=0, verbose=False)
    rss_loaded = rss_mb()[0]

    def run(n: int) -> float:
        start, out = time.perf_counter(), 0
        for _ in llm.generate(ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0, reset=True):
            out += 1
            if out >= n:
                break
        return out / (time.perf_counter() - start)
    run(8)  # warm up
    return {"mode": f"llama.cpp {llama_cpp.__version__}", "batch1_tok_s": run(tokens), "rss_loaded_mb": rss_loaded,
            "rss_peak_mb": rss_mb()[1]}


def one_mode(mode: str, tokens: int, seed: bool, threads: int, seed_requests: int, seed_tokens: int) -> dict:
    if mode == "llama.cpp":
        return llama_cpp_row(tokens, threads)
    import radixgen
    from radixgen.cli import seed_messages
    engine = radixgen.Engine(quantization=mode, dtype="float32", num_threads=threads, max_total_tokens=8000)  # a small KV pool (370 MB fp32)
    rss_loaded = rss_mb()[0]
    engine.chat(seed_messages(2), {"temperature": 0, "max_new_tokens": 8})  # warm up
    engine.flush_cache()
    params = {"temperature": 0, "max_new_tokens": tokens, "min_new_tokens": tokens}
    start = time.perf_counter()
    out = engine.chat(seed_messages(1), params)
    b1 = out[0]["meta_info"]["completion_tokens"] / (time.perf_counter() - start)
    row = {"mode": mode, "batch1_tok_s": b1, "rss_loaded_mb": rss_loaded}
    if seed:
        engine.flush_cache()
        start = time.perf_counter()
        outs = engine.chat(seed_messages(seed_requests), {"temperature": 0, "max_new_tokens": seed_tokens})
        row["seed_s"] = time.perf_counter() - start
        row["seed_tok_s"] = sum(o["meta_info"]["completion_tokens"] for o in outs) / row["seed_s"]
    row["rss_peak_mb"] = rss_mb()[1]
    engine.shutdown()
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modes", default="none,auto,int8,int4,llama.cpp")
    ap.add_argument("--seed-modes", default="none,auto")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--kernels", action="store_true", help="the kernel table instead of the engine table")
    ap.add_argument("--torch-kernels", action="store_true", help="add torch's int8pack/int4pack/fbgemm to it (slow)")
    ap.add_argument("--rows", default="1,8,32,64")
    ap.add_argument("--seed-requests", type=int, default=64)
    ap.add_argument("--seed-tokens", type=int, default=128)
    ap.add_argument("--one", help=argparse.SUPPRESS)  # child: run one mode, print its row as JSON
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        print("ROW " + json.dumps(one_mode(args.one, args.tokens, args.one in args.seed_modes.split(","), args.threads,
                                             args.seed_requests, args.seed_tokens)))
        return
    print(cpu_kind(), f"| {args.threads} threads", flush=True)
    if args.kernels:
        kernels([int(r) for r in args.rows.split(",")], args.torch_kernels)
        return
    rows = []
    from radixgen.kernels import cpu_quant
    print(f"our quantized kernel: {cpu_quant.kernel_path()}", flush=True)
    for mode in args.modes.split(","):
        cmd = [sys.executable, __file__, "--one", mode, "--tokens", str(args.tokens), "--threads", str(args.threads),
               "--seed-modes", args.seed_modes, "--seed-requests", str(args.seed_requests),
               "--seed-tokens", str(args.seed_tokens)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        rows.append(json.loads(next(ln for ln in out.splitlines() if ln.startswith("ROW "))[4:]))
        print(rows[-1], flush=True)
    base = rows[0]
    print(f"\n| quantization | batch-1 tok/s ({args.tokens} tokens) | vs {base['mode']} | {args.seed_requests}-request seed tok/s "
          f"(<= {args.seed_tokens} tokens) | seed s | "
          f"vs {base['mode']} | RSS loaded MB | RSS peak MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        seed = r.get("seed_tok_s")
        ratio = f"x{seed / base['seed_tok_s']:.2f}" if seed and "seed_tok_s" in base else "-"
        seed_cells = f"{seed:.1f} | {r['seed_s']:.1f}" if seed else "skipped | -"
        print(f"| {r['mode']} | {r['batch1_tok_s']:.1f} | x{r['batch1_tok_s'] / base['batch1_tok_s']:.2f} | "
              f"{seed_cells} | {ratio} | {r['rss_loaded_mb']:.0f} | {r['rss_peak_mb']:.0f} |")

if __name__ == "__main__":
    main()
