"""radixgen behind SGLang's router: `radixgen serve --dp 2` with the cache-aware policy vs the
round-robin policy vs one `radixgen serve` holding both threads, over HTTP.

The few-shot and multi-turn workloads of bench/prefix_reuse.py (the same prompts), sent as text to
`/generate` by concurrent clients (the router's cache-aware policy matches prompt *text* against
what it sent each worker); multi-turn goes turn by turn, the 16 conversations of a turn at once.
Each (system, workload) gets fresh processes, so every radix cache (the workers' and the
router's) starts empty. Reports wall time, the share of prompt tokens served from a worker's
cache, and tokens/s. Writes bench/results/router.json.

    python bench/router.py [--workloads few-shot,multi-turn] [--systems "dp 2"] [--concurrency 32] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from transformers import AutoTokenizer

from prefix_reuse import few_shot, multi_turn  # bench/prefix_reuse.py, beside this script
from radixgen.runtime.config import EngineConfig
from radixgen.runtime.model_loader import resolve_model_dir
from radixgen.runtime.server.launch import ServerProcess, launch_server

RESULTS = Path(__file__).parent / "results"
WORKLOADS = ("few-shot", "multi-turn")
MAX_NEW = 32


def systems(threads: int) -> dict[str, list[str]]:
    """name -> `radixgen serve` flags (launch_server adds --host / --port)."""
    dp = ["--dp", "2", "--num-threads", str(threads)]  # --dp splits the threads: 1 each on 2 cores
    return {"dp 2, cache_aware": [*dp, "--router-policy", "cache_aware"],
            "dp 2, round_robin": [*dp, "--router-policy", "round_robin"],
            f"1 worker, {threads} threads": ["--num-threads", str(threads)]}


class Client:
    """Concurrent /generate calls; adds up prompt, cached and completion tokens."""

    def __init__(self, url: str, tok, concurrency: int):
        self.url, self.tok, self.concurrency = url, tok, concurrency
        self.prompt = self.cached = self.completion = 0

    def one(self, ids: list[int], max_new: int) -> list[int]:
        body = {"text": self.tok.decode(ids), "sampling_params": {"temperature": 0, "max_new_tokens": max_new}}
        r = httpx.post(self.url + "/generate", json=body, timeout=600)
        r.raise_for_status()
        meta = r.json()["meta_info"]
        self.prompt += meta["prompt_tokens"]
        self.cached += meta["cached_tokens"]
        self.completion += meta["completion_tokens"]
        return r.json()["output_ids"]

    def run(self, prompts: list[list[int]], max_new: int) -> list[list[int]]:
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(lambda ids: self.one(ids, max_new), prompts))


def measure(name: str, flags: list[str], workload: str, tok, args: argparse.Namespace) -> dict:
    log = RESULTS / f"router-{name.replace(' ', '').replace(',', '-')}-{workload}.log"
    server: ServerProcess = launch_server([*flags, "--max-total-tokens", str(args.max_total_tokens)], log, timeout=600)
    try:
        client = Client(server.url, tok, args.concurrency)
        client.run([tok.encode("Warm up.")], 4)  # first-request costs out of the timing
        client.prompt = client.cached = client.completion = 0
        start = time.perf_counter()
        if workload == "few-shot":
            client.run(few_shot(tok)[0], MAX_NEW)
        else:
            multi_turn(tok, client.run, MAX_NEW, "You are a helpful assistant.")
        elapsed = time.perf_counter() - start
    finally:
        server.stop()
    return {"system": name, "workload": workload, "seconds": elapsed, "prompt_tokens": client.prompt,
            "cached_tokens": client.cached, "cached_share": client.cached / client.prompt,
            "tok_s": client.completion / elapsed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", default=",".join(WORKLOADS), help=f"subset of {','.join(WORKLOADS)}")
    ap.add_argument("--concurrency", type=int, default=32, help="client threads sending requests at once")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads in all, every system")
    ap.add_argument("--max-total-tokens", type=int, default=16000, help="KV pool of each worker")
    ap.add_argument("--systems", default="", help="only the systems whose name contains one of these (comma-separated)")
    args = ap.parse_args()
    RESULTS.mkdir(exist_ok=True)
    tok = AutoTokenizer.from_pretrained(resolve_model_dir(None, EngineConfig().cache_dir))
    rows = []
    for workload in args.workloads.split(","):
        for name, flags in systems(args.threads).items():
            if args.systems and not any(part in name for part in args.systems.split(",")):
                continue
            rows.append(measure(name, flags, workload, tok, args))
            r = rows[-1]
            print(f"{workload:>10} {name:>22}: {r['seconds']:7.2f} s, cached {r['cached_tokens']:>7} of "
                  f"{r['prompt_tokens']:>7} ({r['cached_share']:.3f}), {r['tok_s']:.1f} tok/s", flush=True)
    print("\n| workload | system | seconds | prompt tokens | cached share | tokens/s |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['workload']} | {r['system']} | {r['seconds']:.2f} | {r['prompt_tokens']} "
              f"| {r['cached_share']:.3f} | {r['tok_s']:.1f} |")
    (RESULTS / "router.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
