"""Grammar compiles in child processes that are killed at their deadline and capped in memory.

A thread cannot be stopped: a regex whose automaton explodes (`[ab]*a[ab]{25}`) or a schema the
converter cannot bound kept compiling after its request was refused, and one engine grew to 14 GB.
Here each compile first runs in a child process (one by default, ~260 MB resident, most of it
torch; started with the vocabulary on the first constrained request, which waits ~3 s for it): under RLIMIT_AS (memory_mb more than the child holds after start-up), killed when
it runs past its time limit, and restarted for the next spec. Choices come back as the
compiled grammar itself (pickled without the vocabulary, which the parent re-attaches); JSON
schemas, regexes and EBNF grammars, whose compile is a few milliseconds of conversion plus a lazy
automaton that does not pickle, come back as "fits", and the parent then builds them itself: the
same deterministic work that just finished inside the limits.
"""
from __future__ import annotations

import os
import pickle
import queue
import select
import struct
import subprocess
import sys
import threading
import time
from typing import Any, Hashable

from .grammar_base import Grammar
from .vocab import TokenVocab

Key = tuple[str, Hashable]
LAZY_KINDS = ("json_schema", "regex", "ebnf")  # built again by the parent (their automata do not pickle)
START_TIMEOUT_S = 120.0  # a child imports numpy / torch and unpickles the vocabulary once


def too_slow(limit_s: float, where: str = "") -> str:
    """The refusal of a compile past its time limit (the sandbox's and the compiler's watchdog's)."""
    return f"grammar compilation exceeded {limit_s:g} s{where}; simplify the spec or raise grammar_compile_timeout_s"


def too_big(memory_mb: int) -> str:
    return (f"grammar compilation went past the memory cap of {memory_mb} MB; "
            "simplify the spec or raise grammar_compile_memory_mb")


class Sandbox:
    """A pool of compile children; `run(key, deadline, limit_s)` -> a Grammar, or None for "fits,
    build it here" (JSON); raises ValueError naming the limit it broke or the spec's problem."""

    def __init__(self, tv: TokenVocab, whitespace: str, memory_mb: int, workers: int, timeout_s: float,
                 json_limits: Any = None) -> None:
        self.tv, self.memory_mb = tv, memory_mb
        self._args = (pickle.dumps(tv), whitespace, memory_mb, timeout_s, json_limits)
        self._idle: queue.Queue[_Child] = queue.Queue()
        self._children: list[_Child] = []
        for _ in range(workers):
            child = _Child(self._args)
            self._children.append(child)
            self._idle.put(child)
        self.ready = threading.Event()  # set once every child has started the first time
        # start the children now, off the caller's thread: the first spec need not wait for them
        threading.Thread(target=self._first_start, daemon=True, name="grammar-sandbox-start").start()

    def _first_start(self) -> None:
        for child in self._children:
            child._restart()
        self.ready.set()

    def run(self, key: Key, deadline: float, limit_s: float) -> Grammar | None:
        """Compile by `deadline` (time.monotonic(); the end of the request's `limit_s`, named in the
        error), waiting for a free child within it."""
        try:
            child = self._idle.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise ValueError(too_slow(limit_s, " (waiting for the compiler)")) from None
        try:
            kind, payload = child.run(key, max(0.0, deadline - time.monotonic()), limit_s, self.memory_mb)
        finally:
            self._idle.put(child)
        if kind == "error":
            raise ValueError(payload)
        if payload is None:
            return None
        grammar: Grammar = pickle.loads(payload)
        grammar._tv = self.tv
        return grammar

    def wait_ready(self) -> None:
        """Block until every child has started (a few seconds: the child imports torch)."""
        for child in self._children:
            child.ensure_started()

    def pids(self) -> list[int]:
        return [c.proc.pid for c in self._children if c.proc is not None and c.proc.poll() is None]

    def shutdown(self) -> None:
        for child in self._children:
            child.closed = True
            child.stop()


class _Child:
    """One child process (`python -c ...`, never a fork of this one, and never multiprocessing's
    spawn, which re-imports the user's main script) and its pipes; started on first use and again
    after a kill. Messages both ways are length-prefixed pickles."""

    def __init__(self, args: tuple) -> None:
        self._args = args
        self.proc: subprocess.Popen | None = None
        self.closed = False  # shut down: never start again
        self._lock = threading.Lock()

    def _start(self) -> None:
        if self.closed:
            raise ValueError("the grammar compiler was shut down")
        code = "from radixgen.constrained.sandbox_child import main; main()"
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        try:
            send(self.proc.stdin, self._args)
            ready = recv(self.proc.stdout, time.monotonic() + START_TIMEOUT_S)
        except (OSError, ValueError, AttributeError):  # killed meanwhile (shutdown)
            ready = None
        if ready != "ready":
            self.stop()
            raise ValueError("the grammar compiler's sandbox process did not start")

    def ensure_started(self) -> None:
        with self._lock:
            if not self.closed and (self.proc is None or self.proc.poll() is not None):
                self._start()

    def _restart(self) -> None:
        try:
            self.ensure_started()
        except ValueError:  # shut down meanwhile, or could not start: the next run tries again
            pass

    def run(self, key: Key, left_s: float, limit_s: float, memory_mb: int) -> tuple[str, Any]:
        with self._lock:
            if self.proc is None or self.proc.poll() is not None:
                self._start()
            deadline = time.monotonic() + left_s
            send(self.proc.stdin, key)
            reply = recv(self.proc.stdout, deadline)
            if reply is not None:
                return reply
            died = time.monotonic() < deadline or self.proc.poll() is not None  # its pipe closed early
            self.stop()  # killed: no work outlives the refusal
            threading.Thread(target=self._restart, daemon=True, name="grammar-sandbox-start").start()
            if died:
                return "error", too_big(memory_mb)
            return "error", too_slow(limit_s)

    def stop(self) -> None:
        """Kill the child (idle or mid-compile); the next run starts a new one."""
        proc, self.proc = self.proc, None  # shutdown() may race a compile thread here
        if proc is not None:
            proc.kill()
            proc.wait(5)
            for pipe in (proc.stdin, proc.stdout):
                pipe.close()


def send(pipe: Any, obj: Any) -> None:
    data = pickle.dumps(obj)
    pipe.write(struct.pack("<Q", len(data)) + data)
    pipe.flush()


def recv(pipe: Any, deadline: float) -> Any:
    """The next message, or None if none came by `deadline` or the pipe closed."""
    def read(n: int) -> bytes | None:
        out = b""
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([pipe], [], [], None if left == float("inf") else left)[0]:
                return None
            chunk = os.read(pipe.fileno(), n - len(out))
            if not chunk:
                return None
            out += chunk
        return out
    head = read(8)
    body = None if head is None else read(struct.unpack("<Q", head)[0])
    return None if body is None else pickle.loads(body)
