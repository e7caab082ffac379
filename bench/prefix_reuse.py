"""Prefix reuse: radix cache on vs off vs transformers, on three workloads, in one run.

  1. few-shot: one ~1,000-token instruction/examples prefix + 128 different questions, 32 new tokens;
  2. multi-turn chat: 16 conversations x 5 turns, each turn resending the whole history, with a
     one-line system prompt ("multi-turn") and with a support agent's ~560-token instructions and
     tool list ("multi-turn-agent", the shape of a real chat agent's requests);
  3. fork: one long context, 8 branches each asking a different question.

Cache on runs every workload, then cache off, then transformers, one system at a time. Reports prefill tokens computed, cache hit rate against the best possible (each prompt's longest
common prefix with any earlier request's prompt + output, less the one token that must be computed),
tokens/s and the speed-up. Writes bench/results/prefix_reuse.{json,png}.

    python bench/prefix_reuse.py [--dtype bfloat16] [--skip-hf] [--workloads few-shot,fork]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Callable

import torch

import radixgen
from hf_baseline import hf_generate, in_own_thread  # bench/hf_baseline.py, beside this script

RESULTS = Path(__file__).parent / "results"
WORKLOADS = ("few-shot", "multi-turn", "multi-turn-agent", "fork")
Run = Callable[[list[list[int]], int], list[list[int]]]  # (prompts, max_new) -> outputs


def few_shot(tok) -> list[list[list[int]]]:
    lines = ["You are a careful arithmetic tutor. Answer each question with the number only."]
    for i in range(60):
        lines.append(f"Q: What is {i * 7 % 50} plus {i * 13 % 40}?\nA: {i * 7 % 50 + i * 13 % 40}")
    prefix = "\n".join(lines) + "\n"
    return [[tok.encode(prefix + f"Q: What is {q} plus {q * 3 % 17}?\nA:") for q in range(128)]]


def fork(tok) -> list[list[list[int]]]:
    story = " ".join(f"On day {d}, the explorer crossed river number {d * 3} and counted {d * 11} birds."
                     for d in range(1, 45))
    asks = ["How many rivers?", "Who is the story about?", "What did the explorer count?", "Summarize it.",
            "What happened on day 5?", "Was it dangerous?", "Give it a title.", "What came last?"]
    return [[tok.encode(f"{story}\nQuestion: {a}\nAnswer:") for a in asks]]


# A chat agent's system prompt: its instructions and tool list, resent with every turn.
AGENT_SYSTEM = "\n".join([
    "You are Orbit, the support assistant of Northwind Outfitters, an online shop for hiking gear.",
    "Follow these rules in every answer:",
    *(f"{i}. {rule}" for i, rule in enumerate([
        "Greet the customer only in your first message.", "Answer in at most three sentences.",
        "Never invent order numbers, prices or delivery dates; look them up with a tool.",
        "If a request needs a tool, say which tool you would call and with which arguments.",
        "Refunds are possible within 30 days of delivery for unused items in original packaging.",
        "Exchanges are free; the customer pays return shipping only for change-of-mind returns.",
        "Standard shipping takes 3-5 business days, express shipping 1-2 business days.",
        "Orders over 80 euros ship for free within the European Union.",
        "Never share one customer's data with another customer.",
        "Escalate to a human agent when the customer asks for one or is upset twice in a row.",
        "Recommend products only from the catalogue the tools return.",
        "Use metric units and euros.", "Keep a friendly, calm and concise tone.",
        "Summarize the conversation when the customer asks for a summary.",
        "If you are unsure, say so and offer to escalate."], 1)),
    "Tools (call them by writing the name and JSON arguments):",
    *(f"- {name}({args}): {doc}" for name, args, doc in [
        ("lookup_order", '{"order_id": string}', "status, items, dates and address of one order"),
        ("search_catalogue", '{"query": string, "max_results": integer}', "matching products with prices"),
        ("check_stock", '{"sku": string, "warehouse": "north" | "south"}', "units available"),
        ("start_return", '{"order_id": string, "items": [string], "reason": string}', "a return label"),
        ("start_exchange", '{"order_id": string, "sku_out": string, "sku_in": string}', "an exchange"),
        ("shipping_quote", '{"country": string, "weight_kg": number, "express": boolean}', "price, days"),
        ("escalate", '{"summary": string, "priority": "low" | "high"}', "hands over to a human agent"),
        ("customer_profile", '{"email": string}', "name, loyalty tier and past orders"),
    ]),
    "Product notes: tents come in 1, 2 and 4 person sizes; sleeping bags are rated to -5, 0 and 5 C;",
    "boots run half a size small; backpacks from 20 to 75 litres; all stoves use standard gas canisters.",
])


def multi_turn(tok, run: Run, max_new: int, system: str) -> tuple[list[list[int]], list[list[int]]]:
    """Turn by turn (each turn needs the previous answer); returns all prompts and outputs in order."""
    topics = ["volcanoes", "bees", "chess", "rain", "the moon", "jazz", "trains", "salt", "glass", "owls",
              "tides", "paper", "bread", "maps", "clocks", "snow"]
    follow = ["Tell me about {t}.", "Tell me more.", "Why does that matter?", "Give an example.", "Summarize."]
    convs = [[{"role": "system", "content": system}] for _ in topics]
    prompts, outputs = [], []
    for turn in range(5):
        for c, t in zip(convs, topics):
            c.append({"role": "user", "content": follow[turn].format(t=t)})
        ids = [tok.encode(tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True),
                          add_special_tokens=False) for c in convs]
        outs = run(ids, max_new)
        for c, o in zip(convs, outs):
            c.append({"role": "assistant", "content": tok.decode(o, skip_special_tokens=True)})
        prompts += ids
        outputs += outs
    return prompts, outputs


def best_hits(prompts: list[list[int]], outputs: list[list[int]]) -> int:
    """Sum over requests of the longest common prefix with an earlier request's prompt + output."""
    best, seen = 0, []
    for p, o in zip(prompts, outputs):
        lcp = 0
        for s in seen:
            n = min(len(p), len(s))
            k = next((i for i in range(n) if p[i] != s[i]), n)
            lcp = max(lcp, k)
        best += min(lcp, len(p) - 1)
        seen.append(p + o)
    return best


def radix_runner(engine: radixgen.Engine, sink: dict) -> Run:
    def run(prompts: list[list[int]], max_new: int) -> list[list[int]]:
        outs = engine.generate(input_ids=prompts, sampling_params={"temperature": 0, "max_new_tokens": max_new})
        sink["cached"] += sum(o["meta_info"]["cached_tokens"] for o in outs)
        sink["tokens"] += sum(o["meta_info"]["completion_tokens"] for o in outs)
        return [o["output_ids"] for o in outs]
    return run


def hf_runner(model, tok, sink: dict) -> Run:
    def run(prompts: list[list[int]], max_new: int) -> list[list[int]]:
        outs = in_own_thread(hf_generate, model, prompts, tok.eos_token_id, max_new)
        sink["tokens"] += sum(map(len, outs))
        return outs
    return run


def measure(name: str, workload: str, run: Run, sink: dict, tok, engine: radixgen.Engine | None) -> dict:
    if engine is not None:
        engine.flush_cache()
        before = engine.get_stats()["prefill_tokens_computed"]
    start = time.perf_counter()
    if workload.startswith("multi-turn"):
        system = AGENT_SYSTEM if workload == "multi-turn-agent" else "You are a helpful assistant."
        prompts, outputs = multi_turn(tok, run, 32, system)
    else:
        prompts = (few_shot if workload == "few-shot" else fork)(tok)[0]
        outputs = run(prompts, 32)
    elapsed = time.perf_counter() - start
    total = sum(map(len, prompts))
    computed = engine.get_stats()["prefill_tokens_computed"] - before if engine else total
    best = best_hits(prompts, outputs)
    return {"system": name, "workload": workload, "seconds": elapsed, "prompt_tokens": total,
            "prefill_computed": computed, "cached": sink["cached"], "best_cached": best,
            "hit_vs_best": sink["cached"] / best if best else float("nan"), "tok_s": sink["tokens"] / elapsed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--skip-hf", action="store_true")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads, every system")
    ap.add_argument("--workloads", default=",".join(WORKLOADS), help=f"subset of {','.join(WORKLOADS)}")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    workloads = args.workloads.split(",")
    rows = []

    def record(name: str, workload: str, run_for: Callable[[dict], Run], engine: radixgen.Engine | None) -> None:
        sink = {"cached": 0, "tokens": 0}
        rows.append(measure(name, workload, run_for(sink), sink, tok, engine))
        r = rows[-1]
        print(f"{workload:>16} {name:>12}: {r['seconds']:7.2f} s, prefill computed {r['prefill_computed']:>7}"
              f" of {r['prompt_tokens']:>7}, hit/best {r['hit_vs_best']:.3f}, {r['tok_s']:.1f} tok/s", flush=True)
    # One system at a time in the process: each engine's thread (and its OpenMP team) ends before
    # the next system starts; transformers runs on threads of its own (hf_baseline.in_own_thread).
    for name, disable in (("radix on", False), ("radix off", True)):
        with radixgen.Engine(dtype=args.dtype, num_threads=args.threads, disable_radix_cache=disable) as engine:
            tok, model_dir, dtype = engine.tokenizer, engine.model_path, engine.core.runner.dtype
            for workload in workloads:
                record(name, workload, lambda sink: radix_runner(engine, sink), engine)
    if not args.skip_hf:
        from transformers import AutoModelForCausalLM
        model = in_own_thread(lambda: AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).eval())
        for workload in workloads:  # one model for every workload, as each engine served them all
            record("transformers", workload, lambda sink: hf_runner(model, tok, sink), None)
    order = {w: i for i, w in enumerate(workloads)}
    rows.sort(key=lambda r: order[r["workload"]])  # stable: on, off, transformers per workload
    print("\n| workload | system | seconds | prefill tokens computed | prompt tokens | cached / best possible "
          "| tokens/s | speed-up vs radix off |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        base = next(x for x in rows if x["workload"] == r["workload"] and x["system"] == "radix off")
        print(f"| {r['workload']} | {r['system']} | {r['seconds']:.2f} | {r['prefill_computed']} | {r['prompt_tokens']} "
              f"| {r['hit_vs_best']:.3f} | {r['tok_s']:.1f} | {base['seconds'] / r['seconds']:.2f}x |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "prefix_reuse.json").write_text(json.dumps(rows, indent=2))
    plot(rows)


def plot(rows: list[dict]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    systems = list(dict.fromkeys(r["system"] for r in rows))
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(systems)
    for k, s in enumerate(systems):
        vals = [next((r["seconds"] for r in rows if r["workload"] == w and r["system"] == s), 0) for w in workloads]
        ax.bar([i + k * width for i in range(len(workloads))], vals, width, label=s)
    ax.set_xticks([i + width * (len(systems) - 1) / 2 for i in range(len(workloads))], workloads)
    ax.set_ylabel("seconds (lower is better)")
    ax.set_title("prefix reuse: radix cache on vs off vs transformers")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "prefix_reuse.png", dpi=120)


if __name__ == "__main__":
    main()
