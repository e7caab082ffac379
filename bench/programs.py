"""Frontend programs: the few-shot, multi-turn and fork programs of tests/frontend/programs.py,
run once each through radixgen in-process (Engine), radixgen over HTTP (the native /generate of a
server subprocess), and as the same programs written as plain transformers `generate` calls.

The DSL runs a batch's programs in parallel threads, so the engine batches their requests and the
radix cache shares their prefixes; the transformers version runs them one after another, as a
hand-written script would. Prints a table of programs/s; writes bench/results/programs.json.

    python bench/programs.py [--dtype bfloat16] [--scale 1] [--skip-hf] [--skip-http]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import torch

import radixgen
import radixgen.examples as P
from radixgen.frontend import RuntimeEndpoint
from radixgen.runtime.server.launch import launch_server

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

GREEDY = {"temperature": 0}


def workloads(scale: int) -> dict[str, tuple[Any, list[dict[str, Any]]]]:
    """name -> (program, inputs): the same inputs for every system."""
    countries = [c for c, _ in P.CAPITALS]
    return {
        "few-shot": (P.few_shot_qa, [{"question": f"What is the capital of {c}?"}
                                     for c in countries * 2 * scale]),
        "multi-turn": (P.chat_roles, [{"question": f"What is the capital of {c}?"} for c in countries * scale]),
        "fork": (P.tips, [{"topic": t} for t in ["sleeping well", "cooking", "running", "saving money"] * scale]),
    }


def run_dsl(backend: Any) -> Callable[[Any, list[dict[str, Any]]], None]:
    def run(program: Any, inputs: list[dict[str, Any]]) -> None:
        states = program.run_batch(inputs, backend=backend, **GREEDY)
        errors = [s.error() for s in states if s.error() is not None]
        if errors:
            raise RuntimeError(f"{len(errors)} programs failed, the first with {errors[0]!r}")
    return run


# ---- the same programs as plain transformers calls ----
class HF:
    def __init__(self, model_dir: str, dtype: torch.dtype):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).eval()

    def gen(self, prompt: str, max_tokens: int, stop: str | None = None) -> str:
        ids = self.tok(prompt, return_tensors="pt").input_ids
        with torch.inference_mode():
            out = self.model.generate(ids, max_new_tokens=max_tokens, do_sample=False, tokenizer=self.tok,
                                      stop_strings=stop, pad_token_id=self.tok.eos_token_id)
        text = self.tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        return text.split(stop)[0] if stop else text

    def few_shot(self, question: str) -> None:
        self.gen(P.FEW_SHOT + "Q: " + question + "\nA:", 8, "\n")

    def chat(self, question: str) -> None:
        msgs = [{"role": "system", "content": "You are a helpful assistant. Answer briefly."},
                {"role": "user", "content": question}]
        for follow_up, max_tokens in (("Say it again in one word.", 16), (None, 8)):
            prompt = self.tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            msgs.append({"role": "assistant", "content": self.gen(prompt, max_tokens)})
            if follow_up:
                msgs.append({"role": "user", "content": follow_up})

    def tips(self, topic: str) -> None:
        text = ("Two tips about staying fit:\nTip 1: Walk every day.\nTip 2: Eat more vegetables.\n\n"
                f"Two tips about {topic}:\n")
        tips = [self.gen(text + f"Tip {i}:", 12, "\n") for i in (1, 2)]
        self.gen(text + f"Tip 1:{tips[0]}\nTip 2:{tips[1]}\nIn short:", 12)

    def runner(self) -> Callable[[Any, list[dict[str, Any]]], None]:
        by_program = {P.few_shot_qa: lambda kw: self.few_shot(kw["question"]),
                      P.chat_roles: lambda kw: self.chat(kw["question"]), P.tips: lambda kw: self.tips(kw["topic"])}

        def run(program: Any, inputs: list[dict[str, Any]]) -> None:
            for kw in inputs:
                by_program[program](kw)
        return run


# ---- the server ----
def measure(system: str, run: Callable[[Any, list[dict[str, Any]]], None], loads: dict, rows: list) -> None:
    for name, (program, inputs) in loads.items():
        run(program, inputs[:1])  # warm-up: first-call costs (tokenizer, kernels) are not the program's
        start = time.perf_counter()
        run(program, inputs)
        seconds = time.perf_counter() - start
        rows.append({"workload": name, "system": system, "programs": len(inputs), "seconds": round(seconds, 2),
                     "programs_per_s": round(len(inputs) / seconds, 2)})
        print(f"{name:<11} {system:<22} {len(inputs):>8} {seconds:>9.2f} {len(inputs) / seconds:>11.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument("--scale", type=int, default=1, help="multiply the number of programs")
    parser.add_argument("--skip-hf", action="store_true")
    parser.add_argument("--skip-http", action="store_true")
    args = parser.parse_args()
    loads, rows = workloads(args.scale), []
    print(f"{'workload':<11} {'system':<22} {'programs':>8} {'seconds':>9} {'programs/s':>11}")
    engine = radixgen.Engine(dtype=args.dtype, max_total_tokens=30000)
    model_dir = engine.model_path
    measure("radixgen in-process", run_dsl(engine), loads, rows)
    engine.shutdown()  # two cores: nothing else may compete with the next system
    if not args.skip_http:
        with launch_server(["--dtype", args.dtype, "--max-total-tokens", "20000"]) as server:
            endpoint = RuntimeEndpoint(server.url)
            measure("radixgen over HTTP", run_dsl(endpoint), loads, rows)
            endpoint.close()
    if not args.skip_hf:
        measure("transformers", HF(model_dir, getattr(torch, args.dtype)).runner(), loads, rows)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "programs.json").write_text(json.dumps({"dtype": args.dtype, "cpu_count": os.cpu_count(),
                                                       "rows": rows}, indent=1))
    print(f"wrote {RESULTS / 'programs.json'}")


if __name__ == "__main__":
    main()
