"""`radixgen batch in.jsonl -o out.jsonl`: an offline job, results in input order, bad lines reported."""
from __future__ import annotations

import json
import sys
from typing import Any

from tqdm import tqdm

from radixgen.runtime.engine import Engine
from radixgen.runtime.sampling_params import SamplingParams


def parse_line(engine: Engine, line: str, default_params: dict[str, Any]) -> tuple[list[int], SamplingParams]:
    """One JSONL line -> (prompt ids, sampling params); ValueError saying what is wrong."""
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(item, dict):
        raise ValueError("each line must be a JSON object")
    given = [k for k in ("prompt", "messages", "input_ids") if k in item]
    if len(given) != 1:
        raise ValueError("give exactly one of 'prompt', 'messages', 'input_ids'")
    if "prompt" in item:
        if not isinstance(item["prompt"], str) or not item["prompt"]:
            raise ValueError("'prompt' must be a non-empty string")
        ids = engine.tokenizer.encode(item["prompt"])
    elif "messages" in item:
        ids = engine.apply_chat_template(item["messages"])
    else:
        ids = item["input_ids"]
    params = SamplingParams(**{**default_params, **item.get("sampling_params", {})})
    return ids, params


def run_batch_file(engine: Engine, in_path: str, out_path: str, default_params: dict[str, Any]) -> tuple[int, int]:
    """Runs every good line as one batch; writes one JSON result per input line, in order."""
    with open(in_path) as f:
        lines = [(n, line) for n, line in enumerate(f, 1) if line.strip()]
    results: dict[int, dict] = {}
    good: list[tuple[int, list[int], SamplingParams]] = []
    for n, line in lines:
        try:
            good.append((n, *parse_line(engine, line, default_params)))
        except ValueError as exc:
            results[n] = {"line": n, "error": str(exc)}
            print(f"{in_path}:{n}: {exc}", file=sys.stderr)
    # Submitted together so they batch; n > 1 expands a line into n consecutive outputs.
    owner = [k for k, (_, _, p) in enumerate(good) for _ in range(p.n)]
    outs: list[list[dict]] = [[] for _ in good]
    if good:
        with tqdm(total=len(owner), desc="requests", unit="req") as bar:
            done = engine.as_completed(input_ids=[ids for _, ids, _ in good], sampling_params=[p for _, _, p in good])
            finished = []
            for i, out in done:
                finished.append((i, out))
                bar.update(1)
        for i, out in sorted(finished, key=lambda pair: pair[0]):
            outs[owner[i]].append({k: out[k] for k in ("text", "output_ids", "meta_info")})
    for (n, _, _), group in zip(good, outs):
        results[n] = {"line": n, "outputs": group}
    with open(out_path, "w") as f:
        for n, _ in lines:
            f.write(json.dumps(results[n]) + "\n")
    return len(good), len(lines) - len(good)
