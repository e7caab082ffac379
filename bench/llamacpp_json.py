"""llama.cpp beside radixgen in bench/schemas_e2e.py (--llamacpp): same schemas, same prompt tokens.

Each schema goes through llama-cpp-python's own converter (LlamaGrammar.from_json_schema, i.e.
json_schema_to_gbnf); an exception there, or a GBNF that llama.cpp's parser rejects
(llama_sampler_init_grammar returns NULL), is "refused" with the message. Generation is greedy
(temp 0 -> llama.cpp's greedy sampler after the grammar sampler, top_k 1, no penalties) on the
token ids radixgen built with the chat template, so both engines see exactly the same prompt; the
worker also tokenizes the rendered chat text with llama.cpp's tokenizer (special=True) and reports
whether that gives the same ids (a check that the two tokenizers agree, not used for generating).

llama.cpp runs in a child process, one schema at a time: a grammar that makes llama.cpp abort
(it throws on some grammar states) or a request past the time limit then costs that schema only;
the child is killed (by its own pid) and a fresh one started for the rest.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

N_THREADS = 2  # the bench machine has 2 cores; radixgen's torch uses both as well


def schema_to_gbnf(schema: Any) -> tuple[str | None, str | None]:
    """(gbnf, None) or (None, why llama-cpp-python's converter refused the schema)."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        return json_schema_to_gbnf(json.dumps(schema)), None
    except Exception as e:  # the converter raises ValueError, KeyError, AssertionError, ...
        return None, f"{type(e).__name__}: {e}"[:300]


def _worker(conn: Connection, model_path: str, n_ctx: int) -> None:
    """Child: load the model once, then answer one job per message until told to stop (None)."""
    import llama_cpp

    llm = llama_cpp.Llama(model_path=model_path, n_ctx=n_ctx, n_threads=N_THREADS, n_threads_batch=N_THREADS,
                          n_batch=512, seed=0, verbose=False)
    vocab = llm._model.vocab
    conn.send({"ready": True})
    while (job := conn.recv()) is not None:
        conn.send(_generate(llm, vocab, job))


def _generate(llm: Any, vocab: Any, job: dict) -> dict:
    import llama_cpp

    same = llm.tokenize(job["text"].encode(), add_bos=False, special=True) == job["ids"]
    # llama.cpp parses the GBNF only when the sampler is built; NULL there means a parse error,
    # and handing NULL to the sampler chain would crash, so check first.
    probe = llama_cpp.llama_sampler_init_grammar(vocab, job["gbnf"].encode(), b"root")
    if not probe:
        return {"status": "refused", "error": "llama.cpp could not parse the generated GBNF", "tokens_match": same}
    llama_cpp.llama_sampler_free(probe)
    grammar = llama_cpp.LlamaGrammar.from_string(job["gbnf"], verbose=False)
    t0 = time.perf_counter()
    out: list[int] = []
    finish = "length"
    for tok in llm.generate(job["ids"], top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0,
                            grammar=grammar, reset=True):
        if llama_cpp.llama_vocab_is_eog(vocab, tok):
            finish = "stop"
            break
        out.append(tok)
        if len(out) >= job["max_new_tokens"]:
            break
    text = llm.detokenize(out).decode("utf-8", errors="replace")
    return {"status": "compiled", "finish": finish, "completion_tokens": len(out), "text": text,
            "gen_s": round(time.perf_counter() - t0, 3), "tokens_match": same}


class Worker:
    """A llama.cpp child process that can be replaced when it dies or hangs."""

    def __init__(self, model_path: str, n_ctx: int) -> None:
        self.model_path, self.n_ctx = model_path, n_ctx
        self._start()

    def _start(self) -> None:
        ctx = mp.get_context("spawn")  # no torch / engine threads inherited from the parent
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, self.model_path, self.n_ctx), daemon=True)
        self.proc.start()
        child.close()
        if not self.conn.poll(300) or not self.conn.recv().get("ready"):
            raise RuntimeError("llama.cpp worker did not start")

    def run(self, job: dict, timeout_s: float) -> dict:
        self.conn.send(job)
        try:
            if self.conn.poll(timeout_s):
                return self.conn.recv()
            error = f"no answer within {timeout_s:.0f} s"
        except EOFError:
            error = f"llama.cpp process died (exit code {self.proc.exitcode})"
        self.proc.kill()
        self.proc.join()
        self._start()
        return {"status": "compiled", "finish": "error", "error": error}

    def close(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()


def run_llamacpp(items: list[dict], prompts: dict[str, tuple[list[int], str]], model_path: Path,
                 max_new_tokens: int, timeout_s: float = 600) -> dict[str, float]:
    """Fill it["llamacpp"] for every item (prompts: id -> (token ids, rendered text)); returns
    timings: model load, total grammar conversion and generation time (serial, one schema at a time)."""
    todo = []
    convert_s = 0.0
    for it in items:
        t = time.perf_counter()
        gbnf, err = schema_to_gbnf(it["schema"])
        convert_s += time.perf_counter() - t
        it["llamacpp"] = {"status": "refused", "error": err} if gbnf is None else {"gbnf_chars": len(gbnf)}
        if gbnf is not None:
            todo.append((it, gbnf))
    n_ctx = max((len(prompts[it["id"]][0]) for it, _ in todo), default=0) + max_new_tokens + 16
    t0 = time.perf_counter()
    worker = Worker(str(model_path), n_ctx) if todo else None
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    try:
        for n, (it, gbnf) in enumerate(todo, 1):
            ids, text = prompts[it["id"]]
            res = worker.run({"ids": ids, "text": text, "gbnf": gbnf, "max_new_tokens": max_new_tokens}, timeout_s)
            it["llamacpp"].update(res)
            print(f"  llama.cpp {n}/{len(todo)} {it['id']}: {res.get('finish', res['status'])} "
                  f"{res.get('completion_tokens', '')} tok {res.get('gen_s', '')} s", flush=True)
    finally:
        if worker is not None:
            worker.close()
    return {"load_s": load_s, "convert_s": convert_s, "generate_s": time.perf_counter() - t0}


def _outcome(r: dict) -> dict[str, bool]:
    """One engine's record for one schema (radixgen's item or it["llamacpp"]) -> table flags."""
    compiled = r.get("status") == "compiled"
    res = r.get("result")
    return {"compiled": compiled, "refused": r.get("status") == "refused",
            "failed": r.get("status") == "failed" or res not in (None, "valid", "invalid", "parse", "length"),
            "finished": r.get("finish") == "stop", "valid": res == "valid", "invalid": res == "invalid",
            "parse": res == "parse", "truncated": res == "length"}


COLUMNS = ["compiled", "refused", "failed", "finished", "valid", "invalid", "parse", "truncated"]


def side_by_side_table(items: list[dict]) -> str:
    """Markdown: per subset and in all, each cell 'radixgen / llama.cpp'. failed = radixgen's
    compile failures (time/memory limit) or a generation that aborted / crashed / timed out."""
    lines = ["| subset | schemas | " + " | ".join(COLUMNS) + " |", "|" + "---|" * (len(COLUMNS) + 2)]
    subsets = list(dict.fromkeys(it["subset"] for it in items))
    for sub in subsets + ["all"]:
        group = [it for it in items if sub in ("all", it["subset"])]
        ours = [_outcome(it) for it in group]
        theirs = [_outcome(it["llamacpp"]) for it in group]
        cells = [f"{sum(o[c] for o in ours)} / {sum(t[c] for t in theirs)}" for c in COLUMNS]
        name = f"**{sub}**" if sub == "all" else sub
        lines.append(f"| {name} | {len(group)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    """Re-print the side-by-side table of a saved schemas_e2e --llamacpp results file (radixgen's
    compile errors that are UnsupportedSchemaError messages count as refused, as schemas_e2e now
    records them)."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("results", type=Path)
    report = json.loads(ap.parse_args().results.read_text())
    items = report["schemas"]
    for it in items:
        if it["status"] == "failed" and (it.get("error") or "").startswith("unsupported JSON schema feature"):
            it["status"] = "refused"
    print(side_by_side_table(items))
    lc = report["llamacpp"]
    print(f"\nradixgen: compile {report['compile_s']:.1f} s + generate {report['generate_s']:.1f} s (one batch). "
          f"llama.cpp: GBNF {lc['convert_s']:.1f} s, load {lc['load_s']:.1f} s, generate {lc['generate_s']:.1f} s "
          f"(serial). Prompt ids match: {lc['tokens_match']}/{lc['tokens_checked']}.")


if __name__ == "__main__":
    main()
