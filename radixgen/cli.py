"""radixgen's command line: generate, chat, batch, demo, serve."""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from radixgen.runtime.config import add_cli_args, from_cli_args
from radixgen.runtime.engine import Engine
from radixgen.runtime.sampling_params import SamplingParams

SEED_SYSTEM = "You are a helpful assistant. Respond in two sentences."
SEED_TOPICS = ["the moon", "volcanoes", "honey bees", "the Roman empire", "photosynthesis", "jazz",
               "black holes", "the printing press", "coral reefs", "the internet", "glaciers", "chess",
               "penguins", "electricity", "the Silk Road", "rainbows"]


def seed_questions(n: int) -> list[str]:
    """The seed workload's distinct short questions (shared with bench/offline.py)."""
    kinds = ["What is", "Why is", "Tell me a fact about", "How old is"]
    return [f"{kinds[(i // len(SEED_TOPICS)) % len(kinds)]} {SEED_TOPICS[i % len(SEED_TOPICS)]}? (#{i})"
            for i in range(n)]


def seed_messages(n: int) -> list[list[dict[str, str]]]:
    return [[{"role": "system", "content": SEED_SYSTEM}, {"role": "user", "content": q}] for q in seed_questions(n)]


def _engine(ns: argparse.Namespace) -> Engine:
    config = from_cli_args(ns)
    return Engine(**{k: v for k, v in vars(config).items()})


def _sampling(ns: argparse.Namespace) -> dict[str, Any]:
    return {"max_new_tokens": ns.max_new_tokens, "temperature": ns.temperature}


def cmd_generate(ns: argparse.Namespace) -> None:
    with _engine(ns) as engine:
        for chunk in engine.generate(ns.prompt, _sampling(ns), stream=True):
            print(chunk["text"], end="", flush=True)
        print()


def cmd_chat(ns: argparse.Namespace) -> None:
    history: list[dict[str, str]] = []
    with _engine(ns) as engine:
        print("radixgen chat: type a message, an empty line or Ctrl-D to quit.")
        for line in sys.stdin:
            if not line.strip():
                break
            history.append({"role": "user", "content": line.strip()})
            reply = ""
            for chunk in engine.generate(input_ids=engine.apply_chat_template(history),
                                         sampling_params=_sampling(ns), stream=True):
                reply += chunk["text"]
                print(chunk["text"], end="", flush=True)
            print()
            history.append({"role": "assistant", "content": reply})


def cmd_batch(ns: argparse.Namespace) -> None:
    from .batch import run_batch_file
    with _engine(ns) as engine:
        ok, bad = run_batch_file(engine, ns.input, ns.output, _sampling(ns))
    print(f"{ok} requests done, {bad} bad lines", file=sys.stderr)
    if bad:
        sys.exit(1)


def cmd_demo(ns: argparse.Namespace) -> None:
    """The main job: the seed workload (64 chat requests, greedy, <= 128 new tokens) on the bundled model."""
    with _engine(ns) as engine:
        msgs = seed_messages(ns.num_requests)
        params = SamplingParams(temperature=0, max_new_tokens=128)
        engine.chat(msgs[:2], params)  # warm up
        start = time.perf_counter()
        outs = engine.chat(msgs, params)
        elapsed = time.perf_counter() - start
        tokens = sum(o["meta_info"]["completion_tokens"] for o in outs)
        for m, o in list(zip(msgs, outs))[:3]:
            print(f"Q: {m[1]['content']}\nA: {o['text'].strip()}\n")
        print(f"{len(outs)} chat requests, {tokens} tokens generated in {elapsed:.2f} s "
              f"= {tokens / elapsed:.1f} tokens/s ({engine.core.runner.dtype}, linears: "
              f"{engine.core.runner.kernels['linears']}, model {engine.model_path})")


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "serve":
        from radixgen.runtime.server import main as serve_main
        return serve_main(argv[1:])
    parser = argparse.ArgumentParser(prog="radixgen", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    specs = {"generate": cmd_generate, "chat": cmd_chat, "batch": cmd_batch, "demo": cmd_demo}
    for name, fn in specs.items():
        p = sub.add_parser(name)
        p.set_defaults(fn=fn)
        add_cli_args(p)
        p.add_argument("--max-new-tokens", type=int, default=128)
        p.add_argument("--temperature", type=float, default=0.0)
        if name == "generate":
            p.add_argument("prompt")
        if name == "batch":
            p.add_argument("input", help="JSONL: one request a line ({'prompt'|'messages'|'input_ids', 'sampling_params'})")
            p.add_argument("-o", "--output", required=True)
        if name == "demo":
            p.add_argument("--num-requests", type=int, default=64)
    sub.add_parser("serve", help="the HTTP server (see `radixgen serve --help`)")
    ns = parser.parse_args(argv)
    try:
        ns.fn(ns)
    except ValueError as exc:
        parser.exit(2, f"radixgen: error: {exc}\n")
