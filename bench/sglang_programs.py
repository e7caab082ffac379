"""SGLang's own frontend test programs (`sglang/test/test_programs.py` of the installed sglang
package, read at run time, never copied here) run unchanged on radixgen, two ways:

- in-process: the file is loaded with `sglang` bound to `radixgen` (`import radixgen as sgl`), the
  default backend an in-process `radixgen.Engine`;
- over HTTP: the real sglang frontend (its interpreter and its RuntimeEndpoint) against a
  `radixgen serve` subprocess on loopback.

    make bench-programs        # installs sglang's frontend (no engine, no CUDA) and runs this
    python bench/sglang_programs.py [--mode both|inproc|http] [--only regex,select]

Each program is called as SGLang's own runner calls it; a program whose check on the answer fails
(AssertionError) is rerun with `check_answer=False` where it takes one. Verdicts: pass; wrong answer
(the model's knowledge: the assertion names what it answered); error (ours: the traceback's last
line); not runnable here (needs the network, an image model or an OpenAI-API backend: the reason).

The test file imports three helpers of sglang's engine side (`sglang.srt.utils.is_hip`,
`get_tokenizer`, `sglang.utils.download_and_cache_file`), which pull torchvision and CUDA-only
modules; they are replaced by the plain equivalents below (a platform flag, the tokenizer loader, a
download that says there is no network). Nothing the programs call is replaced. Writes
bench/results/sglang_programs.json.
"""
from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import os
import subprocess
import sys
import time
import traceback
import types
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

# Not runnable on any local engine, SGLang's included: why, per program.
NOT_RUNNABLE = {
    "test_image_qa": "needs an image model and example_image.png",
    "test_hellaswag_select": "downloads HellaSwag from GitHub (no network here)",
    "test_completion_speculative": "API speculative execution: an OpenAI-backend feature (token_usage)",
    "test_chat_completion_speculative": "API speculative execution: an OpenAI-backend feature",
}


def test_file() -> Path:
    """sglang/test/test_programs.py of the installed package, found without importing sglang."""
    spec = importlib.util.find_spec("sglang")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("sglang is not installed: `make bench-programs` installs its frontend "
                 "(pip install --no-deps sglang==0.5.10.post1 and the few packages it imports)")
    return Path(spec.submodule_search_locations[0]) / "test" / "test_programs.py"


def _module(name: str, **attrs: Any) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    sys.modules[name] = mod
    return mod


def _no_download(url: str, *args: Any, **kwargs: Any) -> str:
    raise RuntimeError(f"no network here to download {url}")


def _read_jsonl(path: str) -> list[Any]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def install_engine_side_helpers() -> None:
    """The three engine-side helpers the test file imports (see the module doc)."""
    from transformers import AutoTokenizer

    _module("sglang.srt.utils", is_hip=lambda: False)
    _module("sglang.srt.utils.hf_transformers_utils", get_tokenizer=AutoTokenizer.from_pretrained)
    if "sglang.utils" not in sys.modules:  # in-process: sglang itself is not imported
        _module("sglang.utils", download_and_cache_file=_no_download, read_jsonl=_read_jsonl)
    else:
        sys.modules["sglang.utils"].download_and_cache_file = _no_download  # type: ignore[attr-defined]


def load_programs(mode: str, dtype: str) -> tuple[types.ModuleType, Any]:
    """The test module, its `sgl` bound per mode, and a closer for what was started."""
    path = test_file()  # before `sglang` is bound to radixgen
    if mode == "inproc":
        import radixgen
        import radixgen.frontend.ir

        sys.modules["sglang"] = radixgen
        _module("sglang.lang")
        sys.modules["sglang.lang.ir"] = radixgen.frontend.ir
        _module("sglang.srt")
        install_engine_side_helpers()
        engine = radixgen.Engine(dtype=dtype, max_total_tokens=30000)
        radixgen.set_default_backend(engine)
        close = engine.shutdown
    else:
        import sglang  # the real frontend

        from radixgen.runtime.server.launch import launch_server

        install_engine_side_helpers()
        server = launch_server(["--dtype", dtype, "--max-total-tokens", "30000"])
        # what SGLang's own runner passes: sgl.Runtime, a server process and its `.endpoint`
        sglang.set_default_backend(types.SimpleNamespace(url=server.url, endpoint=sglang.RuntimeEndpoint(server.url)))
        close = server.stop
    spec = importlib.util.spec_from_file_location("sglang_test_programs", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module, close


def run_one(fn: Any, timeout_s: float) -> dict[str, Any]:
    """`call` in a thread: a program that hangs is reported (its thread is left behind) and the
    run goes on to the next one."""
    pool = ThreadPoolExecutor(1)
    future = pool.submit(call, fn)
    pool.shutdown(wait=False)
    try:
        return future.result(timeout=timeout_s)
    except FutureTimeout:
        return {"verdict": "error", "detail": f"no answer within {timeout_s:.0f} s", "seconds": timeout_s}


def call(fn: Any) -> dict[str, Any]:
    """Call as SGLang's runner does; on a failed answer check, again without it where possible."""
    start = time.perf_counter()
    checks = "check_answer" in inspect.signature(fn).parameters
    try:
        fn(check_answer=True) if checks else fn()
        verdict, detail = "pass", ""
    except AssertionError as e:
        verdict, detail = "wrong answer", str(e).replace("\n", " ")[:300]
        if checks:
            try:
                fn(check_answer=False)
                detail += " (passes with check_answer=False)"
            except Exception as e2:  # noqa: BLE001
                verdict, detail = "error", f"with check_answer=False: {type(e2).__name__}: {e2}"
    except Exception as e:  # noqa: BLE001 - every other failure is ours to explain
        last = traceback.format_exception(e)[-1].strip()
        verdict, detail = "error", last[:300]
    return {"verdict": verdict, "detail": detail, "seconds": round(time.perf_counter() - start, 1)}


def run_mode(mode: str, dtype: str, only: list[str] | None, timeout_s: float) -> list[dict[str, Any]]:
    module, close = load_programs(mode, dtype)
    names = [n for n, f in vars(module).items() if n.startswith("test_") and inspect.isfunction(f)
             and f.__module__ == module.__name__]
    rows = []
    try:
        for name in names:
            if only and not any(o in name for o in only):
                continue
            if name in NOT_RUNNABLE:
                row = {"verdict": "not runnable here", "detail": NOT_RUNNABLE[name], "seconds": 0}
            else:
                row = run_one(getattr(module, name), timeout_s)
            rows.append({"mode": mode, "program": name, **row})
            print(f"{mode:<7} {name:<34} {row['verdict']:<18} {row['seconds']:>6}s  {row['detail'][:150]}",
                  flush=True)
    finally:
        close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", default="both", choices=["both", "inproc", "http"])
    ap.add_argument("--only", default=None, help="comma-separated parts of program names")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--timeout", type=float, default=900, help="seconds a program may take")
    ap.add_argument("--json-out", default=None, help=argparse.SUPPRESS)  # one mode's rows, for main()
    args = ap.parse_args()
    only = args.only.split(",") if args.only else None
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(run_mode(args.mode, args.dtype, only, args.timeout)))
        os._exit(0)  # a hung program's thread must not keep this process alive
    rows: list[dict[str, Any]] = []
    for mode in (["inproc", "http"] if args.mode == "both" else [args.mode]):
        # each mode in its own process: one binds `sglang` to radixgen, the other imports the real one
        out = RESULTS / f".sglang_programs_{mode}.json"
        RESULTS.mkdir(exist_ok=True)
        cmd = [sys.executable, __file__, "--mode", mode, "--dtype", args.dtype, "--json-out", str(out),
               "--timeout", str(args.timeout)]
        subprocess.run(cmd + (["--only", args.only] if args.only else []), check=True, env=os.environ)
        rows += json.loads(out.read_text())
        out.unlink()
    print("\n| program | " + " | ".join(dict.fromkeys(r["mode"] for r in rows)) + " |")
    programs = list(dict.fromkeys(r["program"] for r in rows))
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    print("|---|" + "---|" * len(modes))
    for p in programs:
        cells = [next((r["verdict"] for r in rows if r["program"] == p and r["mode"] == m), "-") for m in modes]
        print(f"| {p} | " + " | ".join(cells) + " |")
    (RESULTS / "sglang_programs.json").write_text(json.dumps(rows, indent=1))
    print(f"\nwrote {RESULTS / 'sglang_programs.json'}")


if __name__ == "__main__":
    main()
