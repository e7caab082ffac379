"""JSON-constrained decoding benchmark on the bundled model (greedy, bfloat16), in one run.

    python bench/json_decode.py [--batches 1,32] [--jf-batches 1,8] [--max-new-tokens 64] [--repeats 3]

1. Step time, constrained vs unconstrained (jump-forward off so the steps are comparable): chat
   prompts asking for a person's JSON record, a schema with fixed keys (string with maxLength,
   integer, enum, boolean), with additionalProperties false (a plain regex, indexed ahead of time)
   and without (extra members with free-form values: lazy over slots), and the fixed-key record as
   a GBNF grammar (EBNF: rules called on a stack, lazy). ms per model step = wall
   time / engine forwards; the unconstrained run decodes (ignore_eos) as many tokens per request as
   the constrained one did on average, from the same cached prompts. Goal: <= 10% overhead. The
   first constrained run, where a lazy grammar computes masks, is shown apart.
2. Jump-forward on vs off (two engines), same prompts and schema: model steps (forwards), wall time.
   Goal: >= 1.5x fewer model steps.
3. Compile times (cold: first compile of a distinct schema; cached: the same spec again) through
   the engine's GrammarCompiler; with xgrammar, if importable, for comparison.

Outputs are checked with json.loads + jsonschema. Writes bench/results/json_decode.json.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import time
from pathlib import Path
from typing import Any

import jsonschema

import radixgen

RESULTS = Path(__file__).resolve().parent / "results"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "jsonschemas-dev"
DEV_IDS = ["001_Glaiveai2K", "029_Github_easy", "084_Kubernetes", "090_Snowplow", "102_WashingtonPost"]

PERSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 32},
        "age": {"type": "integer"},
        "occupation": {"type": "string", "enum": ["engineer", "teacher", "doctor", "artist", "farmer", "chef"]},
        "city": {"type": "string", "maxLength": 24},
        "is_married": {"type": "boolean"},
    },
    "required": ["name", "age", "occupation", "city", "is_married"],
    "additionalProperties": False,
}
# the same without additionalProperties: false: extra members with free-form values, so the
# grammar is lazy over slots (masks computed per state on first use) instead of indexed
PERSON_OPEN: dict[str, Any] = {k: v for k, v in PERSON_SCHEMA.items() if k != "additionalProperties"}
# the fixed-key record again as a GBNF grammar (an EBNF request: rules called on a stack, lazy masks)
PERSON_GBNF = r"""
root   ::= "{" "\"name\":" ws string32 "," ws "\"age\":" ws int "," ws "\"occupation\":" ws occupation ","
           ws "\"city\":" ws string24 "," ws "\"is_married\":" ws ("true" | "false") "}"
occupation ::= "\"" ("engineer" | "teacher" | "doctor" | "artist" | "farmer" | "chef") "\""
string32 ::= "\"" char{0,32} "\""
string24 ::= "\"" char{0,24} "\""
char   ::= [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})
int    ::= "-"? ("0" | [1-9] [0-9]{0,15})
ws     ::= " "?
"""
NAMES = ["Alice", "Bob", "Carmen", "Dmitri", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jamal", "Kofi",
         "Lena", "Mateo", "Nadia", "Oscar", "Priya", "Quentin", "Rosa", "Sven", "Tara", "Umar", "Vera",
         "Wei", "Ximena", "Yusuf", "Zoe", "Amara", "Bruno", "Chloe", "Diego", "Emeka", "Freya"]
CITIES = ["Lisbon", "Nairobi", "Osaka", "Toronto", "Lima", "Oslo", "Pune", "Denver"]


def prompts(engine: radixgen.Engine, n: int) -> list[list[int]]:
    """n distinct chat prompts (ids) asking for one person's JSON record."""
    out = []
    for i in range(n):
        text = (f"Write a JSON record for {NAMES[i % len(NAMES)]}, who lives in {CITIES[i % len(CITIES)]}. "
                "Give name, age, occupation, city and whether they are married.")
        out.append(engine.apply_chat_template([{"role": "user", "content": text}]))
    return out


def run(engine: radixgen.Engine, ids: list[list[int]], params: dict[str, Any]) -> dict[str, Any]:
    """One batched generate; wall time and the engine-stat deltas."""
    before = engine.get_stats()
    start = time.perf_counter()
    outs = engine.generate(input_ids=ids, sampling_params=[dict(params) for _ in ids])
    wall = time.perf_counter() - start
    after = engine.get_stats()
    fwd = after["forwards"] - before["forwards"]
    gen = after["generation_tokens"] - before["generation_tokens"]
    return {"wall_s": wall, "forwards": fwd, "generation_tokens": gen, "outs": outs,
            "ms_per_step": 1000 * wall / max(fwd, 1), "tokens_per_step": gen / max(fwd, 1)}


def valid_rate(outs: list[dict], schema: dict) -> float:
    ok = 0
    for o in outs:
        try:
            jsonschema.validate(json.loads(o["text"]), schema)
            ok += 1
        except (ValueError, jsonschema.ValidationError):
            pass
    return ok / max(len(outs), 1)


def md_table(headers: list[str], rows: list[list[Any]]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:.3g}" if isinstance(v, float) and abs(v) < 1000 else f"{v:.0f}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def bench_compile(engine: radixgen.Engine) -> list[dict[str, Any]]:
    """Cold then cached compile of the person schema and a few dev schemas (and xgrammar's, if any)."""
    compiler = engine.core.constraints.compiler
    schemas = [("person", PERSON_SCHEMA), ("person-open", PERSON_OPEN)]
    for sid in DEV_IDS:
        path = DATA / f"{sid}.json"
        if path.exists():
            schemas.append((sid, json.loads(path.read_text())["schema"]))
    xgc = None
    if importlib.util.find_spec("xgrammar") is not None:
        import xgrammar as xgr
        info = xgr.TokenizerInfo.from_huggingface(engine.tokenizer, vocab_size=compiler.vocab_size)
        xgc = xgr.GrammarCompiler(info, cache_enabled=False)
    rows = []
    for name, schema in schemas:
        row: dict[str, Any] = {"schema": name}
        try:
            t = time.perf_counter()
            compiler.compile("json_schema", schema)
            row["cold_s"] = time.perf_counter() - t
            t = time.perf_counter()
            compiler.compile("json_schema", schema)
            row["cached_s"] = time.perf_counter() - t
            row["status"] = "compiled"
        except ValueError as e:
            row["status"] = f"error: {str(e)[:80]}"
        if xgc is not None:
            try:
                t = time.perf_counter()
                xgc.compile_json_schema(json.dumps(schema))
                row["xgrammar_s"] = time.perf_counter() - t
            except Exception as e:  # xgrammar raises its own error types
                row["xgrammar_s"] = f"error: {type(e).__name__}"
        rows.append(row)
    return rows


def bench_overhead(engine: radixgen.Engine, batches: list[int], max_new: int, repeats: int) -> list[dict]:
    """Per schema (indexed, then lazy) and batch: ms per step constrained vs not, best of
    repeats; the first constrained run (lazy masks computed as states are first visited) apart."""
    rows = []
    specs = (("person", "json_schema", PERSON_SCHEMA), ("person-open", "json_schema", PERSON_OPEN),
             ("person-gbnf", "ebnf", PERSON_GBNF))
    for (name, kind, spec), b in [(s, b) for s in specs for b in batches]:
        schema = PERSON_OPEN if name == "person-open" else PERSON_SCHEMA  # what the outputs validate against
        ids = prompts(engine, b)
        engine.flush_cache()
        run(engine, ids, {"temperature": 0, "max_new_tokens": 1})  # cache the prompts for both runs
        cons_p = {"temperature": 0, "max_new_tokens": max_new, kind: spec}
        cons = [run(engine, ids, cons_p) for _ in range(1)]  # warm (masks) + length probe
        mean_len = round(sum(o["meta_info"]["completion_tokens"] for o in cons[0]["outs"]) / b)
        free_p = {"temperature": 0, "max_new_tokens": max(mean_len, 1), "ignore_eos": True}
        c_runs, u_runs = [], []
        for _ in range(repeats):  # alternate, so load changes hit both sides alike
            c_runs.append(run(engine, ids, cons_p))
            u_runs.append(run(engine, ids, free_p))
        c = min(c_runs, key=lambda r: r["ms_per_step"])
        u = min(u_runs, key=lambda r: r["ms_per_step"])
        rows.append({
            "schema": name,
            "path": engine.core.constraints.compiler.compile(kind, spec).info["path"],
            "first_run_ms_step": cons[0]["ms_per_step"], "batch": b, "decode_tokens_per_req": mean_len,
            "constrained_ms_step": c["ms_per_step"], "unconstrained_ms_step": u["ms_per_step"],
            "constrained_ms_step_median": statistics.median(r["ms_per_step"] for r in c_runs),
            "unconstrained_ms_step_median": statistics.median(r["ms_per_step"] for r in u_runs),
            "constrained_steps": c["forwards"], "unconstrained_steps": u["forwards"],
            "constrained_tok_per_step": c["tokens_per_step"], "unconstrained_tok_per_step": u["tokens_per_step"],
            "overhead_pct": 100 * (c["ms_per_step"] / u["ms_per_step"] - 1),
            "valid_rate": valid_rate(c["outs"], schema),
            "finish_length": sum(o["meta_info"]["finish_reason"].get("type") == "length" for o in c["outs"]),
        })
    return rows


def bench_jump(engine: radixgen.Engine, batches: list[int], max_new: int, repeats: int) -> dict[int, dict]:
    res = {}
    params = {"temperature": 0, "max_new_tokens": max_new, "json_schema": PERSON_SCHEMA}
    for b in batches:
        ids = prompts(engine, b)
        engine.flush_cache()
        run(engine, ids, {"temperature": 0, "max_new_tokens": 1})  # cache prompts (+ compile below)
        run(engine, ids, params)  # warm-up
        runs = [run(engine, ids, params) for _ in range(repeats)]
        best = min(runs, key=lambda r: r["wall_s"])
        res[b] = {"forwards": best["forwards"], "wall_s": best["wall_s"],
                  "wall_s_median": statistics.median(r["wall_s"] for r in runs),
                  "generation_tokens": best["generation_tokens"],
                  "valid_rate": valid_rate(best["outs"], PERSON_SCHEMA),
                  "texts": [o["text"] for o in best["outs"]]}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", default="1,32", help="batch sizes for the step-time comparison")
    ap.add_argument("--jf-batches", default="1,8", help="batch sizes for jump-forward on vs off")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-total-tokens", type=int, default=32768, help="KV pool per engine")
    args = ap.parse_args()
    batches = [int(x) for x in args.batches.split(",")]
    jf_batches = [int(x) for x in args.jf_batches.split(",")]
    kw = {"dtype": "bfloat16", "max_total_tokens": args.max_total_tokens}
    report: dict[str, Any] = {"args": vars(args), "schema": PERSON_SCHEMA}

    engine = radixgen.Engine(enable_jump_forward=False, **kw)
    try:
        report["compile"] = bench_compile(engine)
        report["overhead"] = bench_overhead(engine, batches, args.max_new_tokens, args.repeats)
        jf_off = bench_jump(engine, jf_batches, args.max_new_tokens, args.repeats)
    finally:
        engine.shutdown()
    engine = radixgen.Engine(enable_jump_forward=True, **kw)
    try:
        jf_on = bench_jump(engine, jf_batches, args.max_new_tokens, args.repeats)
    finally:
        engine.shutdown()

    jrows = []
    for b in jf_batches:
        off, on = jf_off[b], jf_on[b]
        same = sum(x == y for x, y in zip(off["texts"], on["texts"])) / b
        jrows.append({"batch": b, "steps_off": off["forwards"], "steps_on": on["forwards"],
                      "step_ratio": off["forwards"] / max(on["forwards"], 1),
                      "wall_off_s": off["wall_s"], "wall_on_s": on["wall_s"],
                      "speedup": off["wall_s"] / on["wall_s"], "tokens_off": off["generation_tokens"],
                      "tokens_on": on["generation_tokens"], "valid_off": off["valid_rate"],
                      "valid_on": on["valid_rate"], "same_text": same, "sample_on": on["texts"][0]})
    report["jump_forward"] = jrows

    print("\n## Step time, constrained vs unconstrained (jump-forward off, greedy, bf16)\n")
    print(md_table(["schema", "grammar", "batch", "tokens/req", "first run ms/step", "constrained ms/step",
                    "unconstrained ms/step", "overhead %", "steps c/u", "tok/step c/u", "valid", "hit length"],
                   [[r["schema"], r["path"], r["batch"], r["decode_tokens_per_req"], r["first_run_ms_step"],
                     r["constrained_ms_step"], r["unconstrained_ms_step"],
                     f"{r['overhead_pct']:+.1f}", f"{r['constrained_steps']}/{r['unconstrained_steps']}",
                     f"{r['constrained_tok_per_step']:.1f}/{r['unconstrained_tok_per_step']:.1f}",
                     f"{r['valid_rate']:.0%}", r["finish_length"]] for r in report["overhead"]]))
    print("\n(best of repeats; medians in the JSON; the first run, not counted there, computes a lazy grammar's"
          "\nmasks as its states are first visited. Goal: overhead <= 10%.)")
    print("\n## Jump-forward on vs off (JSON with fixed keys)\n")
    print(md_table(["batch", "steps off", "steps on", "fewer steps x", "wall off s", "wall on s", "speedup x",
                    "tokens off/on", "valid off/on", "same text"],
                   [[r["batch"], r["steps_off"], r["steps_on"], r["step_ratio"], r["wall_off_s"], r["wall_on_s"],
                     r["speedup"], f"{r['tokens_off']}/{r['tokens_on']}",
                     f"{r['valid_off']:.0%}/{r['valid_on']:.0%}", f"{r['same_text']:.0%}"] for r in jrows]))
    print(f"\nGoal: >= 1.5x fewer steps. Sample (on): {jrows[0]['sample_on']!r}")
    print("\n## Compile times (engine GrammarCompiler)\n")
    has_xgr = any("xgrammar_s" in r for r in report["compile"])
    print(md_table(["schema", "status", "cold ms", "cached ms"] + (["xgrammar ms"] if has_xgr else []),
                   [[r["schema"], r["status"], 1000 * r.get("cold_s", float("nan")),
                     1000 * r.get("cached_s", float("nan"))]
                    + ([1000 * r["xgrammar_s"] if isinstance(r.get("xgrammar_s"), float) else r.get("xgrammar_s")]
                       if has_xgr else []) for r in report["compile"]]))
    if not has_xgr:
        print("\nxgrammar is not installed: no comparison (it is a bench-only extra).")
    report["xgrammar_installed"] = has_xgr
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "json_decode.json").write_text(json.dumps(report, indent=2, default=str))
    print(f"\nwrote {RESULTS / 'json_decode.json'}")


if __name__ == "__main__":
    main()
