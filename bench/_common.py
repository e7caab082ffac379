"""Helpers shared by bench/decode.py and bench/perplexity.py: the shipped text's token ids, and one
system or mode per fresh child process (so its resident memory is its own)."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
PPL_TEXT = Path(__file__).parent / "data" / "ppl.txt"  # public domain, see bench/data/README.md


def bundled_tokenizer():
    from transformers import AutoTokenizer
    from radixgen.runtime.config import EngineConfig
    from radixgen.runtime.model_loader import resolve_model_dir
    return AutoTokenizer.from_pretrained(resolve_model_dir(None, EngineConfig().cache_dir))


def text_ids() -> list[int]:
    """bench/data/ppl.txt in the bundled SmolLM2 tokenizer, no special tokens (~4,070 ids)."""
    return list(bundled_tokenizer()(PPL_TEXT.read_text(), add_special_tokens=False)["input_ids"])


def emit_row(row: dict) -> None:
    """The child's answer: one line the parent picks out of whatever else it printed."""
    print("ROW " + json.dumps(row), flush=True)


def run_child(script: str, args: list[str]) -> dict:
    """`python script args` in a fresh process; its emit_row() dict. A failing child raises with the
    end of its stderr, so one broken mode is readable in the parent's output."""
    proc = subprocess.run([sys.executable, script, *args], capture_output=True, text=True)
    rows = [ln[4:] for ln in proc.stdout.splitlines() if ln.startswith("ROW ")]
    if proc.returncode != 0 or not rows:
        raise RuntimeError(f"{Path(script).name} {' '.join(args)} failed (exit {proc.returncode}):\n"
                           + proc.stderr[-3000:])
    return json.loads(rows[-1])


def installed(systems: list[str]) -> list[str]:
    """systems less llama.cpp where llama-cpp-python (the bench extra) is not installed, saying so."""
    if "llama.cpp" in systems and importlib.util.find_spec("llama_cpp") is None:
        print("llama-cpp-python is not installed (pip install -e '.[bench]'): no llama.cpp row", flush=True)
        return [s for s in systems if s != "llama.cpp"]
    return systems
