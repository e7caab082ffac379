"""Decode speed (issue #17): batch-1 decode tokens/s after a short and after a long prompt, and
aggregate decode tokens/s at batch 8 and 64, per radixgen weight mode, beside llama.cpp
(llama-cpp-python, the bench extra) on the same GGUF file and transformers on the same weights, in
one run. Each system / mode runs in a fresh child process, so its resident memory is its own.

    python bench/decode.py [--modes none,int8,int4,auto,llama.cpp,transformers] [--threads N]
                           [--tokens 128] [--batches 1,8,64] [--long 1000] [--repeat N] [--quick]

Prompts: raw text (no chat template) from bench/data/ppl.txt, the same ids for every system: batch 1
gets its first 32 ids, and its first --long ids; batch B gets B distinct 32-id pieces. Each request
decodes exactly --tokens tokens, greedy, EOS banned (min_new_tokens for radixgen and transformers,
the EOS logit masked for llama.cpp). Decode is timed apart from prefill, from an empty cache: the
time to first token (TTFT: until every request of the batch has its first token, i.e. prefill) and
decode tok/s = B * (tokens - 1) / the time after it, read where each system hands out tokens
(radixgen: its token stream; transformers: a streamer; llama.cpp: our own decode loop). With
--repeat N each figure is the best of N runs.
radixgen: dtype auto (fp32 on CPUs without AMX / AVX512-BF16), --quantization per mode. transformers:
the HF directory radixgen converted from the GGUF (its Q4_1 dequantized), in the dtype auto picks.
llama.cpp: its C API (the high-level Llama decodes one sequence): one llama_batch a step holding each
sequence's newest token under its own seq id, KV cells split evenly between the sequences.
RSS: VmRSS after loading and one warm-up request (radixgen's KV pool and llama.cpp's context
included, as far as touched), and the child's peak VmHWM. Prints a markdown table, writes
bench/results/decode.{json,png}.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from typing import Callable

import numpy as np
import torch

from _common import RESULTS, emit_row, installed, run_child, text_ids  # bench/, beside this script
from quant import cpu_kind, rss_mb

SHORT = 32  # prompt ids of the short batch-1 case and of each batched request
# (prompts, max_new_tokens) -> (the new ids of each, seconds to every request's first token, seconds after it)
Runner = Callable[[list[list[int]], int], tuple[list[list[int]], float, float]]


def cases(batches: list[int], long: int) -> list[tuple[str, int, int]]:
    """(name, batch, prompt length) per measurement."""
    out: list[tuple[str, int, int]] = []
    for b in batches:
        out += [("b1_p32", 1, SHORT), (f"b1_p{long}", 1, long)] if b == 1 else [(f"b{b}", b, SHORT)]
    return out


def pieces(ids: list[int], batch: int, length: int) -> list[list[int]]:
    if batch * length > len(ids):
        raise SystemExit(f"bench/data/ppl.txt has {len(ids)} ids: too few for {batch} prompts of {length}")
    return [ids[i * length: (i + 1) * length] for i in range(batch)]


def measure(run: Runner, prompts: list[list[int]], tokens: int, repeat: int) -> dict:
    """Best of `repeat` runs: time to first token (prefill) and decode tok/s after it."""
    ttft = decode = math.inf
    for _ in range(repeat):
        outs, first, rest = run(prompts, tokens)
        assert all(len(o) == tokens for o in outs), "every request decodes exactly `tokens` tokens"
        ttft, decode = min(ttft, first), min(decode, rest)
    return {"ttft_s": ttft, "decode_s": decode, "decode_tok_s": len(prompts) * (tokens - 1) / decode}


def radixgen_runner(mode: str, args: argparse.Namespace, pool: int) -> tuple[Runner, str]:
    import radixgen
    engine = radixgen.Engine(quantization=mode, dtype=args.dtype, num_threads=args.threads, max_total_tokens=pool)
    runner = engine.core.runner

    def run(prompts: list[list[int]], n: int) -> tuple[list[list[int]], float, float]:
        engine.flush_cache()  # prefill again: no reuse of the previous run's prompts
        outs: list[list[int]] = [[] for _ in prompts]
        start, first = time.perf_counter(), None
        for item in engine.generate(input_ids=prompts, sampling_params={"temperature": 0, "max_new_tokens": n,
                                                                         "min_new_tokens": n},
                                    stream=True, rid=[str(i) for i in range(len(prompts))]):
            outs[int(item["meta_info"]["id"])] += item["output_ids"]  # streamed: the new ids only
            if first is None and all(outs):
                first = time.perf_counter()
        return outs, first - start, time.perf_counter() - first
    return run, f"{str(runner.dtype).removeprefix('torch.')}, {mode} -> {runner.quantization}"


class FirstTokenClock:
    """A transformers streamer that only notes when the first new tokens came (generate() hands it
    the prompt first, then each step's new tokens)."""

    def __init__(self) -> None:
        self.calls, self.first = 0, 0.0

    def put(self, value: torch.Tensor) -> None:
        self.calls += 1
        if self.calls == 2:
            self.first = time.perf_counter()

    def end(self) -> None:
        pass


def transformers_runner(args: argparse.Namespace) -> tuple[Runner, str]:
    import transformers
    from transformers import AutoModelForCausalLM
    from radixgen.runtime.config import EngineConfig
    from radixgen.runtime.model_loader import resolve_model_dir
    from radixgen.runtime.model_runner import pick_dtype
    dtype = pick_dtype(args.dtype, torch.device("cpu"))
    model = AutoModelForCausalLM.from_pretrained(resolve_model_dir(None, EngineConfig().cache_dir), dtype=dtype).eval()
    pad = model.generation_config.eos_token_id
    pad = pad[0] if isinstance(pad, list) else pad

    def run(prompts: list[list[int]], n: int) -> tuple[list[list[int]], float, float]:
        ids = torch.tensor(prompts)  # [B, L]: equal lengths, no padding
        clock = FirstTokenClock()
        start = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                                 min_new_tokens=n, do_sample=False, pad_token_id=pad, streamer=clock)
        return out[:, ids.shape[1]:].tolist(), clock.first - start, time.perf_counter() - clock.first
    return run, f"transformers {transformers.__version__}, {str(dtype).removeprefix('torch.')}"


class LlamaCppBatch:
    """Greedy decode of several sequences at once through llama.cpp's C API: the prompts in one
    llama_batch, then each step one token per sequence (its own seq id and position)."""

    def __init__(self, threads: int, max_new: int):
        import llama_cpp as lc
        from radixgen.runtime.model_loader import bundled_gguf
        self.lc, self.threads, self.max_new = lc, threads, max_new
        lc.llama_backend_init()
        self.model = lc.llama_model_load_from_file(str(bundled_gguf()).encode(), lc.llama_model_default_params())
        vocab = lc.llama_model_get_vocab(self.model)
        self.n_vocab, self.eos = lc.llama_vocab_n_tokens(vocab), lc.llama_vocab_eos(vocab)
        self.ctx, self.shape, self.batch = None, None, None

    def prepare(self, prompts: list[list[int]]) -> None:
        """A context for these prompts and up to max_new tokens each (kept while the shape holds),
        made before the timed runs: it allocates the KV cells and reserves the compute graph."""
        lc, seq_len = self.lc, max(map(len, prompts)) + self.max_new
        shape = (len(prompts), -(-seq_len // 256) * 256, sum(map(len, prompts)))
        n_seq, n_tokens = shape[0], shape[2]
        if shape != self.shape:
            if self.ctx is not None:
                lc.llama_free(self.ctx)
                lc.llama_batch_free(self.batch)
            params = lc.llama_context_default_params()
            params.n_seq_max, params.n_ctx = n_seq, n_seq * shape[1]  # cells split evenly: not kv_unified
            params.n_batch, params.n_threads, params.n_threads_batch = n_tokens, self.threads, self.threads
            params.n_ubatch = min(n_tokens, 512)
            # llama-cpp-python's Llama default (flash_attn=False), as bench/quant.py's llama.cpp row ran:
            # then these tokens are the high-level API's, bit for bit (tests/test_bench_decode.py)
            params.flash_attn_type = lc.LLAMA_FLASH_ATTN_TYPE_DISABLED
            self.ctx = lc.llama_init_from_model(self.model, params)
            if not self.ctx:
                raise RuntimeError(f"llama.cpp could not make a context for {n_seq} sequences of {shape[1]}")
            self.batch, self.shape = lc.llama_batch_init(n_tokens, 0, 1), shape

    def _decode(self, items: list[tuple[int, list[int], int]]) -> list[int]:
        """items: (seq id, token ids, position of the first); the next greedy token of each (EOS masked)."""
        b, k, last = self.batch, 0, []
        for seq, toks, pos in items:
            for j, tok in enumerate(toks):
                b.token[k], b.pos[k], b.n_seq_id[k], b.logits[k] = tok, pos + j, 1, j == len(toks) - 1
                b.seq_id[k][0] = seq
                k += 1
            last.append(k - 1)
        b.n_tokens = k
        if self.lc.llama_decode(self.ctx, b) != 0:
            raise RuntimeError("llama_decode failed")
        out = []
        for i in last:
            logits = np.ctypeslib.as_array(self.lc.llama_get_logits_ith(self.ctx, i), shape=(self.n_vocab,)).copy()
            logits[self.eos] = -np.inf
            out.append(int(logits.argmax()))
        return out

    def run(self, prompts: list[list[int]], n: int) -> tuple[list[list[int]], float, float]:
        self.prepare(prompts)
        self.lc.llama_memory_clear(self.lc.llama_get_memory(self.ctx), True)
        start = time.perf_counter()
        outs = [[t] for t in self._decode([(s, p, 0) for s, p in enumerate(prompts)])]
        first = time.perf_counter()
        for step in range(1, n):  # token `step` of each sequence; the prompt's logits gave the first
            toks = self._decode([(s, [o[-1]], len(p) + step - 1) for s, (p, o) in enumerate(zip(prompts, outs))])
            for o, t in zip(outs, toks):
                o.append(t)
        return outs, first - start, time.perf_counter() - first


def one_system(system: str, args: argparse.Namespace) -> dict:
    ids = text_ids()
    todo = cases(args.batches, args.long)
    if system == "llama.cpp":
        import llama_cpp
        llama = LlamaCppBatch(args.threads, args.tokens)
        run, label = llama.run, f"llama.cpp {llama_cpp.__version__}, same Q4_1 GGUF file"
    elif system == "transformers":
        run, label = transformers_runner(args)
    else:
        pool = max(b * (n + args.tokens) for _, b, n in todo) + 256
        run, label = radixgen_runner(system, args, pool)
    run(pieces(ids, 2, 16), 4)  # warm up
    row = {"system": system, "weights": label, "rss_loaded_mb": rss_mb()[0], "cases": {}}
    for name, batch, length in todo:
        if system == "llama.cpp":
            llama.prepare(pieces(ids, batch, length))  # its context for this shape, made before the clock starts
        row["cases"][name] = measure(run, pieces(ids, batch, length), args.tokens, args.repeat)
        print(name, row["cases"][name], flush=True)
    row["rss_peak_mb"] = rss_mb()[1]
    return row


def main() -> None:
    from decode_report import plot, table  # bench/decode_report.py
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modes", default="none,int8,int4,auto,llama.cpp,transformers")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--batches", default="1,8,64")
    ap.add_argument("--long", type=int, default=1000, help="prompt ids of the long batch-1 case")
    ap.add_argument("--repeat", type=int, default=1, help="best of N for every timed run")
    ap.add_argument("--dtype", default="auto", help="radixgen's (and so transformers') dtype")
    ap.add_argument("--quick", action="store_true", help="smoke run: 16 tokens, batches 1 and 8, a 200-id long prompt")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # child: one system, its row as JSON
    args = ap.parse_args()
    for name, small in (("tokens", 16), ("batches", "1,8"), ("long", 200)) if args.quick else ():
        if getattr(args, name) == ap.get_default(name):  # --quick shrinks what was not given
            setattr(args, name, small)
    args.batches = [int(b) for b in str(args.batches).split(",")]
    torch.set_num_threads(args.threads)
    if args.one:
        emit_row(one_system(args.one, args))
        return
    head = (f"decode, greedy, {args.tokens} new tokens a request, {args.threads} threads, best of {args.repeat} | "
            f"{cpu_kind()}")
    print(head, flush=True)
    child = ["--threads", str(args.threads), "--tokens", str(args.tokens), "--long", str(args.long),
             "--repeat", str(args.repeat), "--dtype", args.dtype, "--batches", ",".join(map(str, args.batches))]
    rows = []
    for system in installed(args.modes.split(",")):
        rows.append(run_child(__file__, ["--one", system, *child]))
        print(rows[-1], flush=True)
    names = [c[0] for c in cases(args.batches, args.long)]
    print("\n" + head + "\n" + table(rows, names, args.tokens))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "decode.json").write_text(json.dumps({"header": head, "tokens": args.tokens, "rows": rows}, indent=2))
    plot(rows, names, head, RESULTS / "decode.png")


if __name__ == "__main__":
    main()
