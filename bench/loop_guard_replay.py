"""What `loop_guard=N` would have done to a greedy bench/schemas_e2e.py run, read from its results.

    python bench/loop_guard_replay.py [bench/results/schemas_e2e.json] [--windows 32,64,128]

Under greedy decoding the guard changes nothing before it fires (tests/runtime/test_sampling.py),
so a guarded run is the unguarded one cut at the first token where the last N tokens repeat with
a period of at most N/2 (runtime/loop_guard.py). Per window: outputs that finished (valid) that
the guard would have cut (must be 0 for it to be safe on by default), outputs that ran to the limit
that it ends early, and the generated tokens it saves. Uses each output's token ids where the
results carry them, else the text re-encoded with the model's tokenizer (an approximation: BPE
may merge across what were two tokens).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from radixgen.runtime.loop_guard import is_looping

RESULTS = Path(__file__).resolve().parent / "results" / "schemas_e2e.json"


def first_fire(ids: list[int], window: int) -> int | None:
    """The output length at which the guard ends the request, or None."""
    for n in range(window + 1, len(ids) + 1):
        if is_looping(ids[:n], window):
            return n
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="?", default=str(RESULTS))
    ap.add_argument("--windows", default="32,64,128")
    args = ap.parse_args()
    items = [it for it in json.loads(Path(args.results).read_text())["schemas"] if "text" in it]
    tokenizer = None
    if any("output_ids" not in it for it in items):
        from transformers import AutoTokenizer

        from radixgen.runtime.config import EngineConfig
        from radixgen.runtime.model_loader import resolve_model_dir
        tokenizer = AutoTokenizer.from_pretrained(resolve_model_dir(None, EngineConfig().cache_dir))
    for it in items:
        it["ids"] = it.get("output_ids") or tokenizer.encode(it["text"], add_special_tokens=False)
    finished = [it for it in items if it.get("finish") == "stop"]
    length = [it for it in items if it.get("finish") == "length"]
    print(f"{len(items)} outputs: {len(finished)} finished, {len(length)} ran to the limit "
          f"({sum(len(it['ids']) for it in length)} tokens)\n")
    print("| window | finished outputs cut | ran-to-limit outputs ended early | tokens saved |")
    print("|---|---|---|---|")
    for window in (int(w) for w in args.windows.split(",")):
        cut = [it["id"] for it in finished if first_fire(it["ids"], window) is not None]
        fires = [(it, first_fire(it["ids"], window)) for it in length]
        ended = [(it, n) for it, n in fires if n is not None]
        saved = sum(len(it["ids"]) - n for it, n in ended)
        print(f"| {window} | {len(cut)} {cut[:8]} | {len(ended)} | {saved} |")


if __name__ == "__main__":
    main()
