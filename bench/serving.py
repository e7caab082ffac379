"""Online serving benchmark: a request-rate sweep with Poisson arrivals over the seed chat workload
(system "You are a helpful assistant. Respond in two sentences." + a distinct short question,
greedy, max_tokens 128), streamed through /v1/chat/completions.

    python bench/serving.py [--rates 0.5,1,2,4,inf] [--requests 24] [--url http://127.0.0.1:30000]

Without --url it starts `python -m radixgen.runtime.server` on a free loopback port and stops it at
the end. Bounded: --requests per rate, and no new request starts after --max-seconds-per-rate.
Reports, per rate: throughput (requests/s, output tokens/s), TTFT and time per output token
(p50 / p99); prints a table and writes bench/results/serving.{json,md,png}.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from radixgen.cli import seed_messages
from radixgen.runtime.server.launch import launch_server

RESULTS = Path(__file__).parent / "results"


@dataclass
class Result:
    ok: bool
    start: float
    first_token: float | None = None
    end: float | None = None
    completion_tokens: int = 0


async def one_request(client: httpx.AsyncClient, messages: list[dict], max_tokens: int) -> Result:
    """Streams one chat completion; times the first content token and the end."""
    body = {"messages": messages, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    res = Result(ok=False, start=time.perf_counter())
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body) as r:
            if r.status_code != 200:
                return res
            async for line in r.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                if event.get("usage"):
                    res.completion_tokens = event["usage"]["completion_tokens"]
                content = event["choices"][0]["delta"].get("content") if event.get("choices") else None
                if content and res.first_token is None:
                    res.first_token = time.perf_counter()
        res.end, res.ok = time.perf_counter(), res.first_token is not None
    except httpx.HTTPError:
        pass
    return res


async def run_rate(url: str, rate: float, convs: list, max_tokens: int, max_seconds: float,
                   seed: int) -> list[Result]:
    """Poisson arrivals at `rate` requests/s (inf: all at once); none starts after max_seconds."""
    rng, tasks = random.Random(seed), []
    limits = httpx.Limits(max_connections=len(convs) + 8)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        begin = time.perf_counter()
        for conv in convs:
            if time.perf_counter() - begin > max_seconds:
                break
            tasks.append(asyncio.create_task(one_request(client, conv, max_tokens)))
            if math.isfinite(rate):
                await asyncio.sleep(rng.expovariate(rate))
        return list(await asyncio.gather(*tasks))


def summarize(rate: float, results: list[Result]) -> dict:
    done = [r for r in results if r.ok]
    ttft = [r.first_token - r.start for r in done]
    tpot = [(r.end - r.first_token) / (r.completion_tokens - 1) for r in done if r.completion_tokens > 1]
    span = max(r.end for r in done) - min(r.start for r in results) if done else float("nan")
    tokens = sum(r.completion_tokens for r in done)
    pct = lambda xs, q: float(np.percentile(xs, q)) if xs else float("nan")  # noqa: E731
    return {"rate": rate, "sent": len(results), "completed": len(done), "duration_s": span,
            "req_per_s": len(done) / span, "output_tok_per_s": tokens / span, "output_tokens": tokens,
            "ttft_p50_s": pct(ttft, 50), "ttft_p99_s": pct(ttft, 99),
            "tpot_p50_ms": pct(tpot, 50) * 1e3, "tpot_p99_ms": pct(tpot, 99) * 1e3}


def table(rows: list[dict]) -> str:
    lines = ["| rate (req/s) | done | req/s | out tok/s | TTFT p50 s | TTFT p99 s | TPOT p50 ms | TPOT p99 ms |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['rate']:g} | {r['completed']}/{r['sent']} | {r['req_per_s']:.2f} | "
                     f"{r['output_tok_per_s']:.1f} | {r['ttft_p50_s']:.2f} | {r['ttft_p99_s']:.2f} | "
                     f"{r['tpot_p50_ms']:.0f} | {r['tpot_p99_ms']:.0f} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['rate']:g}" for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    axes[0].plot(labels, [r["output_tok_per_s"] for r in rows], "o-")
    axes[0].set(title="throughput", ylabel="output tokens/s")
    for ax, key, unit in ((axes[1], "ttft", "s"), (axes[2], "tpot", "ms")):
        suffix = "_s" if unit == "s" else "_ms"
        for q in ("p50", "p99"):
            ax.plot(labels, [r[f"{key}_{q}{suffix}"] for r in rows], "o-", label=q)
        ax.set(title="time to first token" if key == "ttft" else "time per output token", ylabel=unit)
        ax.legend()
    for ax in axes:
        ax.set_xlabel("request rate (req/s)")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", default="0.5,1,2,4,inf", help="request rates to sweep, in requests/s")
    ap.add_argument("--requests", type=int, default=24, help="requests per rate")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--max-seconds-per-rate", type=float, default=90.0)
    ap.add_argument("--url", help="an already running server (else one is started)")
    ap.add_argument("--server-flags", default="", help="flags for the started server (dtype auto by default)")
    args = ap.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    server = None if args.url else launch_server(args.server_flags.split())
    url = args.url or server.url
    try:
        info = httpx.get(url + "/server_info", timeout=30).json()
        convs = seed_messages(args.requests * (len(rates) + 1))  # distinct questions everywhere
        asyncio.run(run_rate(url, math.inf, convs[:4], 8, 60, seed=0))  # warm up
        rows = []
        for i, rate in enumerate(rates, start=1):
            httpx.post(url + "/flush_cache", timeout=30)  # each rate starts with a cold prefix cache
            batch = convs[i * args.requests:(i + 1) * args.requests]
            rows.append(summarize(rate, asyncio.run(run_rate(url, rate, batch, args.max_tokens,
                                                             args.max_seconds_per_rate, seed=i))))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    finally:
        if server is not None:
            server.stop(60)
    title = (f"seed chat workload over HTTP, {info['dtype']}, greedy, max_tokens={args.max_tokens}, "
             f"{args.requests} requests per rate")
    print(f"\n{title}\n{table(rows)}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "serving.json").write_text(json.dumps({"title": title, "rows": rows}, indent=1))
    (RESULTS / "serving.md").write_text(f"{title}\n\n{table(rows)}\n")
    plot(rows, RESULTS / "serving.png", title)
    print(f"wrote {RESULTS}/serving.{{json,md,png}}")


if __name__ == "__main__":
    main()
