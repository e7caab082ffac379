"""End to end on the bundled model over the dev schemas (../shared/data/jsonschemas-dev).

    python bench/schemas_e2e.py [--limit 40] [--max-new-tokens 256] [--only 001,063]

Each schema is compiled through the engine's own GrammarCompiler (so generation hits its cache);
UnsupportedSchemaError -> refused, any other ValueError (e.g. the compile time limit) -> failed,
both with the message. Every schema that compiles gets a chat prompt built from the schema
("Produce a JSON object that follows this JSON schema: ..."), and all of them run greedy in one
batched engine.generate call with a list of sampling params. Per subset: compiled, refused, failed,
generated, finished within max_new_tokens, parsed, validated with jsonschema (format checking on;
the rate is over those that finished; goal 100%), and every failure with its schema id and error.
--limit N picks N schemas round-robin over the subsets (in id order). Writes
bench/results/schemas_e2e.json (--out: another name there).

--llamacpp also runs llama.cpp (llama-cpp-python, its own JSON-schema -> GBNF converter) on the
same schemas with the same prompt token ids, greedy, same max_new_tokens, after radixgen's engine
has shut down (the two never share the CPU), classifies its outputs the same way and prints one
table with both engines side by side (see bench/llamacpp_json.py). Results then go to
bench/results/schemas_e2e_llamacpp_<max_new_tokens>.json (--out: <out stem>_llamacpp.json).
--llamacpp-from FILE instead takes llama.cpp's outputs from an earlier --llamacpp results file
(same schemas, same prompt code, same max_new_tokens: llama.cpp's side does not depend on
radixgen's settings), prints the same side-by-side table and saves the report with them.
"""
from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import jsonschema

import radixgen
from llamacpp_json import N_THREADS  # sibling module: bench/ is sys.path[0] when run as a script
from radixgen.constrained import UnsupportedSchemaError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "jsonschemas-dev"
RESULTS = Path(__file__).resolve().parent / "results"
PROMPT_CHARS = 1500
UNSUPPORTED = "unsupported JSON schema feature"  # how UnsupportedSchemaError's message starts


def load_schemas(limit: int | None, only: list[str] | None) -> list[dict[str, Any]]:
    """[{id, subset, schema}], round-robin over subsets when limited."""
    items = []
    for path in sorted(DATA.glob("[0-9][0-9][0-9]_*.json")):
        sid = path.stem
        if only and not any(sid.startswith(o) for o in only):
            continue
        items.append({"id": sid, "subset": sid.split("_", 1)[1], "schema": json.loads(path.read_text())["schema"]})
    if limit is None or limit >= len(items):
        return items
    by_subset: dict[str, list[dict]] = defaultdict(list)
    for it in items:
        by_subset[it["subset"]].append(it)
    picked: list[dict] = []
    queues = list(by_subset.values())
    while len(picked) < limit and any(queues):
        for q in queues:
            if q and len(picked) < limit:
                picked.append(q.pop(0))
    return sorted(picked, key=lambda it: it["id"])


def prompt_messages(schema: Any) -> list[dict[str, str]]:
    text = json.dumps(schema, separators=(",", ":"))
    if len(text) > PROMPT_CHARS:
        text = text[:PROMPT_CHARS] + " ...(truncated)"
    msg = f"Produce a JSON object that follows this JSON schema: {text}. Use realistic values."
    return [{"role": "user", "content": msg}]


def make_prompt(engine: radixgen.Engine, schema: Any) -> list[int]:
    return engine.apply_chat_template(prompt_messages(schema))


def rendered_prompt(engine: radixgen.Engine, schema: Any) -> str:
    """The chat text make_prompt tokenizes (for checking another engine's tokenizer on it)."""
    return engine.tokenizer.apply_chat_template(prompt_messages(schema), tokenize=False, add_generation_prompt=True)


def validator_for(schema: Any) -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.validator_for(schema) if isinstance(schema, dict) else jsonschema.Draft7Validator
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def check(schema: Any, text: str) -> tuple[str, str | None]:
    """('valid'|'parse'|'invalid', error message)."""
    try:
        value = json.loads(text)
    except ValueError as e:
        return "parse", f"json: {e}"
    err = jsonschema.exceptions.best_match(validator_for(schema).iter_errors(value))
    if err is None:
        return "valid", None
    where = "/" + "/".join(str(p) for p in err.absolute_path)
    return "invalid", f"at {where} ({err.validator}): {err.message[:200]}"


def classify(schema: Any, finish: str | None, text: str) -> tuple[str, str | None]:
    """One engine's output -> ('valid'|'invalid'|'parse'|'length'|<finish>, error): only a
    stop is parsed and validated; a length is truncated; anything else (abort, error) is kept."""
    if finish == "length":
        return "length", None
    if finish != "stop":
        return finish or "error", None
    return check(schema, text)


def md_table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(str(v) for v in r) + " |" for r in rows])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None, help="at most N schemas, round-robin over subsets")
    ap.add_argument("--only", default=None, help="comma-separated id prefixes, e.g. 001,063")
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--max-total-tokens", type=int, default=65536, help="KV pool size")
    ap.add_argument("--loop-guard", type=int, default=0, help="radixgen's loop_guard window (0: off)")
    ap.add_argument("--loop-guard-action", default="length", help="length | escape (runtime/loop_guard.py)")
    ap.add_argument("--llamacpp", action="store_true", help="also run llama.cpp, side by side")
    ap.add_argument("--llamacpp-model", default=None, help="GGUF for llama.cpp (default: the bundled one)")
    ap.add_argument("--llamacpp-timeout", type=float, default=600, help="seconds per schema for llama.cpp")
    ap.add_argument("--llamacpp-from", default=None, help="reuse llama.cpp's side of this saved results file")
    ap.add_argument("--out", default="schemas_e2e.json", help="results file name under bench/results/")
    args = ap.parse_args()
    items = load_schemas(args.limit, args.only.split(",") if args.only else None)
    engine = radixgen.Engine(dtype=args.dtype, max_total_tokens=args.max_total_tokens)
    compiler = engine.core.constraints.compiler
    try:
        t0 = time.perf_counter()
        for it in items:
            t = time.perf_counter()
            try:
                compiler.compile("json_schema", it["schema"])
                it["status"] = "compiled"
            except UnsupportedSchemaError as e:
                it["status"], it["error"] = "refused", str(e)
            except ValueError as e:
                # the compile sandbox hands its child's errors back as plain ValueError, so an
                # unsupported keyword is told by UnsupportedSchemaError's message there
                it["status"] = "refused" if str(e).startswith(UNSUPPORTED) else "failed"
                it["error"] = str(e)
            it["compile_s"] = round(time.perf_counter() - t, 3)
        compile_s = time.perf_counter() - t0
        todo = [it for it in items if it["status"] == "compiled"]
        print(f"compiled {len(todo)}/{len(items)} in {compile_s:.1f} s; generating ...", flush=True)
        # every schema's prompt (llama.cpp may take ones radixgen refused): ids and the chat text
        prompts = {it["id"]: (make_prompt(engine, it["schema"]),
                              rendered_prompt(engine, it["schema"]) if args.llamacpp else "") for it in items}
        t0 = time.perf_counter()
        outs = engine.generate(input_ids=[prompts[it["id"]][0] for it in todo],
                               sampling_params=[{"temperature": 0, "max_new_tokens": args.max_new_tokens,
                                                 "json_schema": it["schema"], "loop_guard": args.loop_guard,
                                                 "loop_guard_action": args.loop_guard_action}
                                                for it in todo]) if todo else []
        gen_s = time.perf_counter() - t0
        stats = engine.get_stats()
    finally:
        engine.shutdown()

    for it, out in zip(todo, outs):
        reason = out["meta_info"]["finish_reason"] or {}
        it["finish"] = reason.get("type")
        it["completion_tokens"] = out["meta_info"]["completion_tokens"]
        it["text"] = out["text"]
        it["output_ids"] = out["output_ids"]  # for bench/loop_guard_replay.py
        if it["finish"] == "abort":
            it["result"], it["error"] = "abort", reason.get("message")
        else:
            it["result"], err = classify(it["schema"], it["finish"], out["text"])
            if err:
                it["error"] = err

    rows, totals = [], defaultdict(int)
    subsets = list(dict.fromkeys(it["subset"] for it in items))
    for sub in subsets + ["all"]:
        group = [it for it in items if sub in ("all", it["subset"])]
        c = {k: sum(1 for it in group if pred(it)) for k, pred in {
            "schemas": lambda it: True,
            "compiled": lambda it: it["status"] == "compiled",
            "refused": lambda it: it["status"] == "refused",
            "failed": lambda it: it["status"] == "failed",
            "generated": lambda it: "finish" in it,
            "finished": lambda it: it.get("finish") == "stop",
            "parsed": lambda it: it.get("result") in ("valid", "invalid"),
            "valid": lambda it: it.get("result") == "valid",
        }.items()}
        rate = f"{c['valid'] / c['finished']:.0%}" if c["finished"] else "-"
        rows.append([f"**{sub}**" if sub == "all" else sub, c["schemas"], c["compiled"], c["refused"], c["failed"],
                     c["generated"], c["finished"], c["parsed"], c["valid"], rate])
        if sub == "all":
            totals.update(c)
    print(f"\n## End to end over jsonschemas-dev (greedy, {args.dtype}, max_new_tokens {args.max_new_tokens})\n")
    print(md_table(["subset", "schemas", "compiled", "refused", "failed", "generated",
                    "finished", "parsed", "valid", "valid / finished"], rows))
    print(f"\ncompile {compile_s:.1f} s (serial, cold); generate {gen_s:.1f} s for {len(todo)} requests in one "
          f"batch; {stats['forwards']} forwards, {stats['generation_tokens']} generated tokens.")
    fails = [it for it in items if it["status"] != "compiled" or it.get("result") not in ("valid", "length")]
    if fails:
        print("\n### Failures (refused / failed compiles, aborts, unparsable or invalid outputs)\n")
        print(md_table(["schema", "what", "error"],
                       [[it["id"], it.get("result") if it["status"] == "compiled" else it["status"],
                         (it.get("error") or "").replace("|", "\\|").replace("\n", " ")[:240]] for it in fails]))
    length = [it for it in items if it.get("result") == "length"]
    if length:
        print("\n### Ran to max_new_tokens (not counted in the rate)\n")
        print(", ".join(f"{it['id']} ({it['text'][-40:]!r})" for it in length))
    report = {"args": vars(args), "compile_s": compile_s, "generate_s": gen_s, "totals": dict(totals), "table": rows}
    RESULTS.mkdir(exist_ok=True)
    report["schemas"] = [{k: v for k, v in it.items() if k != "schema"} for it in items]
    # radixgen's results are on disk before llama.cpp starts: a long llama.cpp run that dies
    # (killed, out of memory) must not take the radixgen half with it
    (RESULTS / args.out).write_text(json.dumps(report, indent=2, default=str))
    print(f"\nwrote {RESULTS / args.out}")
    if args.llamacpp or args.llamacpp_from:
        times = {"compile_s": compile_s, "generate_s": gen_s}
        report["llamacpp"] = (reused_llamacpp(args, items, times) if args.llamacpp_from
                              else llamacpp_side(args, items, prompts, times))
        report["schemas"] = [{k: v for k, v in it.items() if k != "schema"} for it in items]
        name = (f"schemas_e2e_llamacpp_{args.max_new_tokens}.json" if args.out == "schemas_e2e.json"
                else Path(args.out).stem + "_llamacpp.json")
        (RESULTS / name).write_text(json.dumps(report, indent=2, default=str))
        print(f"\nwrote {RESULTS / name}")


def reused_llamacpp(args: argparse.Namespace, items: list[dict], radixgen_s: dict[str, float]) -> dict[str, Any]:
    """llama.cpp's side from args.llamacpp_from (checked: same max_new_tokens, every schema there),
    printed beside radixgen's as llamacpp_side does."""
    from llamacpp_json import side_by_side_table

    saved = json.loads(Path(args.llamacpp_from).read_text())
    if saved["args"]["max_new_tokens"] != args.max_new_tokens:
        raise SystemExit(f"{args.llamacpp_from} has max_new_tokens {saved['args']['max_new_tokens']}")
    theirs = {it["id"]: it["llamacpp"] for it in saved["schemas"]}
    for it in items:
        it["llamacpp"] = theirs[it["id"]]
    lc = saved["llamacpp"]
    print(f"\n## radixgen / llama.cpp side by side (greedy, max_new_tokens {args.max_new_tokens}; radixgen "
          f"{args.dtype}, llama.cpp {Path(lc['model']).name}, its outputs from {args.llamacpp_from})\n")
    print(side_by_side_table(items))
    print(f"\nradixgen: compile {radixgen_s['compile_s']:.1f} s + generate {radixgen_s['generate_s']:.1f} s "
          f"(one batch). llama.cpp (saved run): generate {lc['generate_s']:.1f} s.")
    return {**lc, "reused_from": args.llamacpp_from}


def llamacpp_side(args: argparse.Namespace, items: list[dict], prompts: dict[str, tuple[list[int], str]],
                  radixgen_s: dict[str, float]) -> dict[str, Any]:
    """Run llama.cpp on the same schemas and prompts, classify its outputs with classify(), print
    the side-by-side table; returns its timings and token-match count for the report."""
    from llamacpp_json import run_llamacpp, side_by_side_table  # imports llama_cpp only when called
    from radixgen.runtime.model_loader import bundled_gguf

    model = Path(args.llamacpp_model) if args.llamacpp_model else bundled_gguf()
    print(f"\nllama.cpp on {model} ...", flush=True)
    timings = run_llamacpp(items, prompts, model, args.max_new_tokens, args.llamacpp_timeout)
    for it in items:
        lc = it["llamacpp"]
        if lc["status"] == "compiled":
            lc["result"], err = classify(it["schema"], lc.get("finish"), lc.get("text", ""))
            lc["error"] = lc.get("error") or err
    match = sum(1 for it in items if it["llamacpp"].get("tokens_match"))
    ran = sum(1 for it in items if "tokens_match" in it["llamacpp"])
    print(f"\n## radixgen / llama.cpp side by side (greedy, max_new_tokens {args.max_new_tokens}; radixgen "
          f"{args.dtype}, llama.cpp {model.name})\n")
    print(side_by_side_table(items))
    print(f"\nradixgen: compile {radixgen_s['compile_s']:.1f} s + generate {radixgen_s['generate_s']:.1f} s "
          f"(one batch). llama.cpp: GBNF conversion {timings['convert_s']:.1f} s, model load "
          f"{timings['load_s']:.1f} s, generate {timings['generate_s']:.1f} s (one schema at a time, "
          f"{N_THREADS} threads). Prompt tokens: llama.cpp's tokenizer on the rendered chat text gives "
          f"radixgen's ids for {match}/{ran} prompts (both engines were fed radixgen's ids).")
    return {"model": str(model), **timings, "tokens_match": match, "tokens_checked": ran}


if __name__ == "__main__":
    main()
