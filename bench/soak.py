"""Soak: N minutes of mixed traffic against one server, then whether it is still whole.

Traffic, from --workers concurrent clients, each picking at random: valid chat completions, native
/generate calls, streams read to the end, streams dropped after a few events (disconnects), JSON
schema and regex constrained requests, and invalid bodies (out-of-range values, unknown schemas,
token ids past the vocabulary). Prints requests served / shed (503) / refused (4xx) / failed (5xx,
transport errors) by kind, latency p50 / p99 of the served ones, the server's resident memory
(with its grammar sandbox children) after a warm-up, every 15 s, at half time and at the end, and
the KV invariant once idle; writes bench/results/soak.json.

    python bench/soak.py --minutes 10 [--workers 8] [--url http://127.0.0.1:30000] [--server-flags "..."]

Bounded: no request starts after --minutes; each has a 120 s client timeout. Run it under
../shared/bin/memcap. Exits 1 if anything failed, RSS grew past --rss-growth-mb over the second
half (the lazily touched KV pool fills during the first), or KV leaked.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import numpy as np
import psutil

from radixgen.runtime.server.launch import launch_server

RESULTS = Path(__file__).parent / "results"
SCHEMA = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
                                           "age": {"type": "integer", "minimum": 0, "maximum": 120}},
          "required": ["name", "age"]}
QUESTIONS = ["What is the capital of France?", "Name a fruit.", "Why is the sky blue?", "Say hello.",
             "Give me a number.", "Describe a cat.", "What is 2 + 2?", "Tell me a fact about the sea."]


def chat(q: str, **extra) -> dict:
    return {"messages": [{"role": "user", "content": q}], "max_tokens": 32, "temperature": 0.7, **extra}


# kind -> (method path, body maker, stream mode): "read" whole, "drop" after 3 events, None: not streamed
KINDS = {
    "chat": ("/v1/chat/completions", lambda q: chat(q), None),
    "generate": ("/generate", lambda q: {"text": q, "sampling_params": {"max_new_tokens": 24, "temperature": 0}}, None),
    "stream": ("/v1/chat/completions", lambda q: chat(q, stream=True), "read"),
    "disconnect": ("/v1/chat/completions", lambda q: chat(q, stream=True, max_tokens=400, ignore_eos=True), "drop"),
    "json_schema": ("/v1/chat/completions", lambda q: chat("Extract: Ann is 31.", max_tokens=48, response_format={
        "type": "json_schema", "json_schema": {"name": "p", "schema": SCHEMA}}), None),
    "regex": ("/generate", lambda q: {"text": q, "sampling_params": {"max_new_tokens": 8, "regex": "[0-9]{1,3}"}}, None),
    "invalid": ("/generate", lambda q: random.choice([
        {"text": q, "sampling_params": {"temperature": -1}},
        {"input_ids": [10 ** 9], "sampling_params": {"max_new_tokens": 2}},
        {"text": q, "sampling_params": {"stop_token_ids": [10 ** 7], "min_new_tokens": 2}},
        {"text": q, "sampling_params": {"json_schema": '{"not": {}}'}},
        {"text": q, "sampling_params": {"seed": 2 ** 70}}]), None),
}
WEIGHTS = {"chat": 4, "generate": 3, "stream": 3, "disconnect": 1, "json_schema": 2, "regex": 1, "invalid": 2}


async def one(client: httpx.AsyncClient, kind: str) -> tuple[str, float]:
    """-> (outcome, seconds): served | shed | refused | failed:<why>."""
    path, make, mode = KINDS[kind]
    body, start = make(random.choice(QUESTIONS)), time.monotonic()
    try:
        if mode is None:
            r = await client.post(path, json=body)
            status = r.status_code
        else:
            async with client.stream("POST", path, json=body) as r:
                status, events = r.status_code, 0
                async for line in r.aiter_lines():
                    events += line.startswith("data: ")
                    if mode == "drop" and events >= 3:
                        break
    except httpx.HTTPError as exc:
        return f"failed:{type(exc).__name__}", time.monotonic() - start
    outcome = ("served" if status == 200 else "shed" if status in (429, 503) else
               "refused" if 400 <= status < 500 else f"failed:{status}")
    return outcome, time.monotonic() - start


async def soak(url: str, minutes: float, workers: int) -> tuple[Counter, dict[str, list[float]]]:
    outcomes: Counter = Counter()
    latency: dict[str, list[float]] = defaultdict(list)
    stop_at = time.monotonic() + minutes * 60
    kinds, weights = list(WEIGHTS), list(WEIGHTS.values())

    async def worker(client: httpx.AsyncClient) -> None:
        while time.monotonic() < stop_at:
            kind = random.choices(kinds, weights)[0]
            outcome, seconds = await one(client, kind)
            outcomes[(kind, outcome)] += 1
            if outcome == "served":
                latency[kind].append(seconds)

    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        await asyncio.gather(*(worker(client) for _ in range(workers)))
    return outcomes, latency


def server_rss_mb(pid: int) -> float:
    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 2 ** 20


def wait_idle(url: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        stats = httpx.get(url + "/server_info", timeout=30).json()["stats"]
        if stats["num_running"] == stats["num_waiting"] == 0 or time.monotonic() > deadline:
            return stats
        time.sleep(0.5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--url", help="an already running server (RSS is then not measured)")
    ap.add_argument("--server-flags", default="--max-total-tokens 20000", help="flags for the started server")
    ap.add_argument("--rss-growth-mb", type=float, default=100.0,
                    help="allowed RSS growth over the second half of the run (the KV pool has filled by then)")
    args = ap.parse_args()
    random.seed(0)
    server = None if args.url else launch_server(args.server_flags.split() + ["--log-level", "warning"])
    url = args.url or server.url
    try:
        asyncio.run(soak(url, 0.25, args.workers))  # warm-up: caches, grammar compiles, allocator
        rss_start = server_rss_mb(server.proc.pid) if server else float("nan")
        samples: list[tuple[float, float]] = []  # (minutes, RSS MB), every 15 s
        done = threading.Event()

        def sample() -> None:
            while server is not None and not done.wait(15):
                samples.append(((time.monotonic() - began) / 60, server_rss_mb(server.proc.pid)))
        began = time.monotonic()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        outcomes, latency = asyncio.run(soak(url, args.minutes, args.workers))
        done.set()
        elapsed = time.monotonic() - began
        stats = wait_idle(url)
        rss_end = server_rss_mb(server.proc.pid) if server else float("nan")
        health = httpx.get(url + "/health", timeout=10).status_code
    finally:
        if server is not None:
            server.stop()
    kv_ok = stats["kv_locked"] == 0 and stats["kv_free"] + stats["kv_evictable"] == stats["kv_capacity"]
    print(f"{elapsed / 60:.1f} min, {args.workers} workers, {sum(outcomes.values())} requests")
    print(f"{'kind':<12} {'served':>7} {'shed':>6} {'refused':>8} {'failed':>7} {'p50 s':>7} {'p99 s':>7}")
    rows = []
    for kind in WEIGHTS:
        got = {o: n for (k, o), n in outcomes.items() if k == kind}
        failed = sum(n for o, n in got.items() if o.startswith("failed"))
        lat = latency.get(kind) or [float("nan")]
        row = {"kind": kind, "served": got.get("served", 0), "shed": got.get("shed", 0),
               "refused": got.get("refused", 0), "failed": failed,
               "failed_by": {o: n for o, n in got.items() if o.startswith("failed")},
               "p50_s": float(np.percentile(lat, 50)), "p99_s": float(np.percentile(lat, 99))}
        rows.append(row)
        print(f"{kind:<12} {row['served']:>7} {row['shed']:>6} {row['refused']:>8} {failed:>7} "
              f"{row['p50_s']:>7.2f} {row['p99_s']:>7.2f}  {row['failed_by'] or ''}")
    # The KV pool is touched lazily (huge pages), so RSS climbs until the prefix cache has filled the
    # pool once; a leak is growth after that, so the verdict is on the second half of the run.
    half = next((rss for t, rss in samples if t >= elapsed / 120), rss_start)
    print(f"server RSS {rss_start:.0f} MB after warm-up, {half:.0f} MB at half time, {rss_end:.0f} MB at the end "
          f"(samples: {' '.join(f'{rss:.0f}' for _, rss in samples)}); /health {health}; "
          f"KV invariant {'holds' if kv_ok else 'BROKEN'} {stats}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "soak.json").write_text(json.dumps({"minutes": elapsed / 60, "workers": args.workers, "rows": rows,
                                                   "rss_start_mb": rss_start, "rss_half_mb": half,
                                                   "rss_end_mb": rss_end, "rss_samples": samples,
                                                   "kv": stats, "health": health}, indent=1))
    grew = rss_end - half > args.rss_growth_mb
    if any(r["failed"] for r in rows) or grew or not kv_ok or health != 200:
        sys.exit(1)


if __name__ == "__main__":
    main()
