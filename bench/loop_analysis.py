"""Where does an output run to max_new_tokens? Reads a schemas_e2e --llamacpp results file.

    python bench/loop_analysis.py [bench/results/schemas_e2e_llamacpp_256.json] [--all]

For every schema where one engine finished (stop) and the other ran to the limit (by default
only radixgen truncated while llama.cpp finished; --all: also the reverse and both truncated),
it finds the repeating unit at the end of the truncated text (smallest period seen at least 3
times) and where in the JSON it sits, by walking the text with a small JSON scanner:
  number digits   - the text ends inside a number
  string contents - inside a string value (key strings: property names)
  whitespace      - the repeating unit is only whitespace
  array items     - the loop is a run of items of one array (the shallowest container the
                    repeating unit touches is an array)
  additional properties - the shallowest container is an object and keys written there near
                    the end are not among its declared properties
  declared members - the same, but every key is declared: a long object, not a loop
  nesting         - the unit opens more containers than it closes (ever deeper values)
and prints the schema fragment at that JSON path (local $refs followed) to compare what each
grammar allows there. Counts per category at the end.
"""
from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "jsonschemas-dev"


def scan(text: str, keys: list | None = None) -> tuple[list[tuple[str, list]], str, list[int], list]:
    """(container stack [(kind, path)], lexical state at the end, depth after each char, path of
    the value being written at the end); keys, if given, gets (end position, depth, key) of
    every object key.
    kind is 'obj'/'arr'; path is the JSON path of the container; state one of
    'string-key', 'string-value', 'number', 'literal', 'between'."""
    stack: list[tuple[str, list]] = []
    expect_key, key, buf, index = False, None, [], []  # index: item count per open array
    state, esc, depths = "between", False, []
    for ch in text:
        if state.startswith("string"):
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                if state == "string-key":
                    key = "".join(buf)
                    if keys is not None:
                        keys.append((len(depths), len(stack), key))
                state = "between"
            else:
                buf.append(ch)
            depths.append(len(stack))
            continue
        if state in ("number", "literal") and not (ch.isalnum() or ch in "+-."):
            state = "between"
        if state == "between":
            path = stack[-1][1] if stack else []
            if ch == "{":
                child = path + ([key] if stack and stack[-1][0] == "obj" else [index[-1]] if stack else [])
                stack.append(("obj", child))
                expect_key = True
            elif ch == "[":
                child = path + ([key] if stack and stack[-1][0] == "obj" else [index[-1]] if stack else [])
                stack.append(("arr", child))
                index.append(0)
            elif ch in "}]":
                if stack:
                    if stack.pop()[0] == "arr":
                        index.pop()
                expect_key = False
            elif ch == '"':
                state, buf = ("string-key" if stack and stack[-1][0] == "obj" and expect_key else "string-value"), []
            elif ch == ":":
                expect_key = False
            elif ch == ",":
                if stack and stack[-1][0] == "obj":
                    expect_key = True
                elif stack:
                    index[-1] += 1
            elif ch.isdigit() or ch == "-":
                state = "number"
            elif ch.isalpha():
                state = "literal"
        depths.append(len(stack))
    here = (stack[-1][1] + ([key] if stack[-1][0] == "obj" else [index[-1]])) if stack else []
    return stack, state, depths, here


def period(text: str, max_unit: int = 400, repeats: int = 3) -> str | None:
    """Smallest unit u with text ending in u * repeats (None: the tail is not periodic)."""
    for p in range(1, min(max_unit, len(text) // repeats) + 1):
        if text[-p:] * repeats == text[-p * repeats:]:
            return text[-p:]
    return None


def classify_loop(text: str) -> tuple[str, str, list, str | None]:
    """(category, detail, JSON path of the looping container, repeating unit)."""
    keys: list = []
    stack, state, depths, here = scan(text, keys)
    unit = period(text)
    path = stack[-1][1] if stack else []
    # a lexical loop only when the repeating unit stays inside the token (a run of array items
    # that happens to stop inside a number is an array loop)
    if state == "number" and (unit is None or all(ch in "0123456789.eE+-" for ch in unit)):
        return "number digits", "", here, unit
    if state == "string-value" and (unit is None or '"' not in unit):
        return "string contents", "", here, unit
    if unit is not None and not unit.strip():
        return "whitespace", "", path, unit
    # no exact period (e.g. invented keys that differ each time): judge the last 200 characters
    window = depths[-len(unit) * 2:] if unit else depths[-200:]
    if unit and unit.count("{") + unit.count("[") > unit.count("}") + unit.count("]"):
        return "nesting", "", path, unit
    # the container holding the loop: the shallowest depth the last two units reach
    level = min(window)
    kind, cpath = stack[level - 1] if 0 < level <= len(stack) else ("top", [])
    if kind == "arr":
        return "array items", "", cpath, unit
    if kind == "obj":  # keys written in that object within the window (checked against the schema)
        start = len(depths) - len(window)
        written = sorted({k for pos, d, k in keys if pos >= start and d == level})
        return "object members", written, cpath, unit
    return "unclear", f"container {kind}", cpath, unit


def schema_at(schema: Any, path: list, root: Any = None) -> Any:
    """The (first) subschema governing `path`: follows properties / items / local $ref, and the
    first anyOf/oneOf/allOf branch that has the key; None when it cannot tell."""
    root = schema if root is None else root
    for _ in range(20):  # resolve refs and combinators at this level
        if isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and schema["$ref"].startswith("#"):
            node = root
            for part in schema["$ref"][1:].strip("/").split("/"):
                node = node.get(part.replace("~1", "/").replace("~0", "~"), {}) if part else node
            schema = node
        else:
            break
    if not path or not isinstance(schema, dict):
        return schema
    head, rest = path[0], path[1:]
    if isinstance(head, int):
        items = schema.get("items", schema.get("prefixItems"))
        items = (items[head] if head < len(items) else schema.get("additionalItems")) if isinstance(items, list) else items
        return schema_at(items, rest, root) if items is not None else None
    if head in schema.get("properties", {}):
        return schema_at(schema["properties"][head], rest, root)
    for kw in ("allOf", "anyOf", "oneOf"):
        for branch in schema.get(kw, []):
            found = schema_at(branch, path, root)
            if found is not None:
                return found
    extra = schema.get("additionalProperties")
    return schema_at(extra, rest, root) if isinstance(extra, dict) else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="?", default=str(RESULTS / "schemas_e2e_llamacpp_256.json"))
    ap.add_argument("--all", action="store_true", help="also llama.cpp's loops and loops in both")
    args = ap.parse_args()
    report = json.loads(Path(args.results).read_text())
    counts: Counter = Counter()
    for it in report["schemas"]:
        lc = it.get("llamacpp", {})
        ours, theirs = it.get("result"), lc.get("result")
        cases = []
        if ours == "length" and theirs != "length" and lc.get("finish") == "stop":
            cases.append(("radixgen", it["text"], f"llama.cpp {theirs}"))
        elif args.all and theirs == "length" and ours != "length":
            cases.append(("llama.cpp", lc["text"], f"radixgen {ours}"))
        elif args.all and ours == theirs == "length":
            cases += [("radixgen (both)", it["text"], ""), ("llama.cpp (both)", lc["text"], "")]
        schema = json.loads((DATA / f"{it['id']}.json").read_text())["schema"]
        for who, text, other in cases:
            cat, detail, path, unit = classify_loop(text)
            if cat == "object members":
                # extras only if some key written near the end is not declared there; all
                # declared -> a long object written out, not a loop
                declared, keys = (schema_at(schema, path) or {}).get("properties"), set(detail)
                if isinstance(declared, dict) and keys and keys <= set(declared):
                    cat, detail = "declared members", "long object, every key declared"
                else:
                    extra = sorted(keys - set(declared or {}))
                    cat, detail = "additional properties", f"undeclared keys {extra[:4]}"
            counts[(who, cat)] += 1
            frag = json.dumps(schema_at(schema, path), separators=(",", ":"))
            print(f"### {it['id']} - {who} loops: {cat} {detail} (other engine: {other})")
            print(f"  path /{'/'.join(map(str, path))}; unit {unit!r:.120}; tail {text[-160:]!r}")
            print(f"  schema there: {frag[:300]}")
            if other.startswith("llama.cpp"):
                print(f"  llama.cpp's text tail: {lc.get('text', '')[-160:]!r}")
    print("\n| engine | category | schemas |\n|---|---|---|")
    for (who, cat), n in sorted(counts.items()):
        print(f"| {who} | {cat} | {n} |")


if __name__ == "__main__":
    main()
