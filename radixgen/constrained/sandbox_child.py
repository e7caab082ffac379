"""The compile sandbox's child process (sandbox.py starts it with `python -c`): compiles the keys
it is sent with its own GrammarCompiler, under the memory cap the parent gave it."""
from __future__ import annotations

import pickle
import resource
import sys
from typing import Any

from .compiler import GrammarCompiler
from .sandbox import LAZY_KINDS, recv, send, too_big


def main() -> None:
    """In the child: compile keys from stdin until it closes; reply ("ok", pickled grammar | None)
    or ("error", message) on stdout."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    tv_bytes, whitespace, memory_mb, timeout_s, json_limits = recv(stdin, float("inf"))
    compiler = GrammarCompiler(pickle.loads(tv_bytes), cache_size=0, timeout_s=timeout_s, whitespace=whitespace,
                               **({} if json_limits is None else {"json_limits": json_limits}))
    vm = _vm_bytes()
    if vm:  # memory_mb on top of what the child holds now (the interpreter, torch, the vocabulary)
        resource.setrlimit(resource.RLIMIT_AS, (vm + memory_mb * 2 ** 20, resource.RLIM_INFINITY))
    send(stdout, "ready")
    while True:
        key = recv(stdin, float("inf"))
        if key is None:
            return
        try:
            grammar = compiler.compile_uncached(key)
            reply: tuple[str, Any] = ("ok", None if key[0] in LAZY_KINDS else pickle.dumps(grammar))
        except MemoryError:
            reply = ("error", too_big(memory_mb))
        except ValueError as exc:
            reply = ("error", str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug of ours, met by one spec
            reply = ("error", f"the grammar compiler failed on this {key[0]} ({type(exc).__name__}: {exc}); "
                              "please report it with the spec")
        send(stdout, reply)


def _vm_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * resource.getpagesize()
    except OSError:
        return 0
