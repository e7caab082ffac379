"""ProgramState: a running program's text, variables, meta info and chat turns.

`s += expr` queues the expression on the state's own worker thread (one thread, so in order) and
returns at once: the program's Python runs ahead until it reads a result (`s["x"]`, `s.text()`),
sibling forks generate in parallel, and a streaming reader sees text as it is generated. A failing
expression stops the program's later expressions and is kept for `s.error()`.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, AsyncIterator, Iterator

from radixgen.runtime.sampling_params import SamplingParams

from .backend import Backend
from .state_group import ProgramStateGroup
from .ir import (Expr, ExprList, Gen, RoleBegin, RoleEnd, Select, SeparateReasoning, StopTrace, Text,
                 VarScopeBegin, VarScopeEnd, parts)

log = logging.getLogger("radixgen.frontend")


class ProgramState:
    def __init__(self, backend: Backend, defaults: SamplingParams, stream: bool = False, tracing: bool = False):
        self.backend, self.defaults, self.stream = backend, defaults, stream
        self.ret_value: Any = None
        self._tracing = tracing        # run expressions inline and stop at the first model call (see program.py)
        self._text = ""
        self._vars: dict[str, Any] = {}
        self._meta: dict[str, Any] = {}
        self._messages: list[dict[str, str]] = []
        self._role: str | None = None
        self._role_start = 0           # where the open turn's content starts in _text
        self._fork_start = 0           # where a fork's own text starts
        self._error: Exception | None = None
        self._worker: ThreadPoolExecutor | None = None
        self._last: Future | None = None
        self._children: list[ProgramState] = []
        self._cond = threading.Condition()  # notified on every change a streaming reader waits for
        self._done_vars: set[str] = set()
        self._finished = False

    # ---- running expressions ----
    def __iadd__(self, expr: Any) -> "ProgramState":
        if expr is None:
            raise ValueError("tried to add None to the program state")
        self._submit(parts(expr))
        return self

    def _submit(self, items: list[Expr]) -> None:
        if self._tracing:
            for item in items:
                self._execute(item)
            return
        if self._worker is None:
            self._worker = ThreadPoolExecutor(1, thread_name_prefix="radixgen-program")
        self._last = self._worker.submit(self._run, items)

    def _run(self, items: list[Expr]) -> None:
        if self._error is not None:
            return  # the program already failed: s.error() says why
        try:
            for item in items:
                self._execute(item)
        except Exception as exc:  # the worker has no caller to raise to: keep it for s.error()
            log.warning("program failed: %s: %s", type(exc).__name__, exc)
            self._error = exc
        finally:
            with self._cond:
                self._cond.notify_all()

    def _execute(self, item: Expr) -> None:
        if isinstance(item, Text):
            self._fill(item.value)
        elif isinstance(item, Gen):
            self._gen(item)
        elif isinstance(item, Select):
            decision = self.backend.select(self._text, item.choices, item.method)
            self._fill(decision.decision)
            self._set_result(item.name, decision.decision, decision.meta_info)
        elif isinstance(item, RoleBegin):
            self._role_begin(item.role)
        elif isinstance(item, RoleEnd):
            self._role_end(item.role)
        elif isinstance(item, VarScopeBegin):
            self._vars[item.name] = len(self._text)
        elif isinstance(item, VarScopeEnd):
            self._set_result(item.name, self._text[self._vars[item.name]:], None)
        elif isinstance(item, SeparateReasoning):
            self._separate_reasoning(item.name)
        else:
            raise TypeError(f"unknown expression {item!r}")

    def _fill(self, text: str) -> None:
        with self._cond:
            self._text += text
            self._cond.notify_all()

    def _set_result(self, name: str | None, value: Any, meta: Any) -> None:
        if name is None:
            return
        with self._cond:
            self._vars[name], self._meta[name] = value, meta
            self._done_vars.add(name)
            self._cond.notify_all()

    def _gen(self, item: Gen) -> None:
        params = self.defaults.replace(**item.overrides())  # run() defaults, then what this gen says
        if not self.stream:
            text, meta = self.backend.generate(self._text, params)
            self._fill(text)
            self._set_result(item.name, text, meta)
            return
        name, value, meta = item.name, "", None
        for delta, meta in self.backend.generate_stream(self._text, params):
            with self._cond:
                self._text += delta
                value += delta
                if name is not None:
                    self._vars[name], self._meta[name] = value, meta
                self._cond.notify_all()
        self._set_result(name, value, meta)

    def _separate_reasoning(self, name: str) -> None:
        """Split variable `name` at `</think>`: the reasoning goes to name_reasoning_content, the rest
        stays the variable and the program's text (as SGLang's interpreter does)."""
        value = str(self._vars[name])
        reasoning, answer = split_reasoning(value)
        with self._cond:
            if self._text.endswith(value):
                self._text = self._text[: len(self._text) - len(value)] + answer
            self._cond.notify_all()
        self._set_result(name, answer, self._meta.get(name))
        self._set_result(name + "_reasoning_content", reasoning, None)

    def _role_begin(self, role: str) -> None:
        template = self.backend.template
        if self._role is not None:
            raise ValueError(f"cannot open a {role} turn inside the open {self._role} turn: end it first")
        if role not in template.prefix:
            raise ValueError(f"unknown role {role!r}")
        if not self._messages and role != "system" and template.default_system:
            # the chat template would add its default system turn here: so do we, to keep the same text
            self._role_begin("system")
            self._fill(template.default_system)
            self._role_end("system")
        self._role = role
        self._fill(template.prefix[role])
        self._role_start = len(self._text)

    def _role_end(self, role: str) -> None:
        if self._role != role:
            raise ValueError(f"{role}_end() without an open {role} turn (open: {self._role})")
        content = self._text[self._role_start:]
        self._fill(self.backend.template.suffix[role])
        self._messages.append({"role": role, "content": content})
        self._role = None

    # ---- lifetime ----
    def sync(self) -> None:
        """Wait until every expression queued so far has run."""
        if self._tracing:
            raise StopTrace
        last = self._last
        if last is not None:
            last.result()

    def _fail(self, exc: Exception) -> None:
        self.sync()
        if self._error is None:
            self._error = exc

    def _finish(self) -> None:
        """The program's function returned: wait for its work, release the worker threads, wake readers."""
        self.sync()
        for child in self._children:  # forks never joined still hold threads
            child._finish()
        if self._worker is not None:
            self._worker.shutdown(wait=False)  # idle by now: its thread exits
            self._worker = None
        with self._cond:
            self._finished = True
            self._cond.notify_all()

    # ---- reading ----
    def text(self) -> str:
        self.sync()
        return self._text

    def messages(self) -> list[dict[str, str]]:
        self.sync()
        return list(self._messages)

    def error(self) -> Exception | None:
        self.sync()
        return self._error

    def get_var(self, name: str) -> Any:
        self.sync()
        if name not in self._vars and self._error is not None:
            raise RuntimeError(f"variable {name!r} was never set: the program failed first ({self._error!r})") \
                from self._error
        return self._vars[name]

    def set_var(self, name: str, value: Any) -> None:
        self.sync()
        self._vars[name] = value

    def get_meta_info(self, name: str) -> Any:
        self.sync()
        return self._meta.get(name)

    __getitem__, __setitem__ = get_var, set_var

    def __contains__(self, name: str) -> bool:
        self.sync()
        return name in self._vars

    def __repr__(self) -> str:
        return f"ProgramState({self.text()!r})"

    # ---- roles, scopes, forks ----
    def _role_or_scope(self, role: str, expr: Any) -> Any:
        if expr is not None:
            self += ExprList([RoleBegin(role), *parts(expr), RoleEnd(role)])
            return None
        return self._scope(RoleBegin(role), RoleEnd(role))

    @contextmanager
    def _scope(self, begin: Expr, end: Expr) -> Iterator[None]:
        self += begin
        yield
        self += end

    def system(self, expr: Any = None) -> Any:
        """`s.system("...")` adds a system turn; `with s.system(): ...` wraps what is added inside."""
        return self._role_or_scope("system", expr)

    def user(self, expr: Any = None) -> Any:
        return self._role_or_scope("user", expr)

    def assistant(self, expr: Any = None) -> Any:
        return self._role_or_scope("assistant", expr)

    @contextmanager
    def copy(self, position_ids_offset: Any = None) -> Iterator["ProgramState"]:
        """`with s.copy() as c: c += ...`: a fork of one, joined (its variables gathered) on exit."""
        group = self.fork(1, position_ids_offset)
        try:
            yield group[0]
        finally:
            group.join()

    def var_scope(self, name: str) -> Any:
        """`with s.var_scope("x"): ...` stores the text added inside as variable x."""
        return self._scope(VarScopeBegin(name), VarScopeEnd(name))

    def fork(self, size: int = 1, position_ids_offset: Any = None) -> "ProgramStateGroup":
        """`size` copies of this state. The text so far is committed to the prefix cache first, so the
        children's requests reuse its KV instead of each computing it."""
        self.sync()
        if size > 1 and self._text and self._error is None:
            self.backend.cache_prefix(self._text)
        children = []
        for _ in range(int(size)):
            child = ProgramState(self.backend, self.defaults)
            child._text, child._vars, child._meta = self._text, dict(self._vars), dict(self._meta)
            child._messages, child._role, child._role_start = list(self._messages), self._role, self._role_start
            child._error, child._fork_start = self._error, len(self._text)
            children.append(child)
        self._children += children
        return ProgramStateGroup(children, self)

    # ---- streaming ----
    def text_iter(self, var_name: str | None = None) -> Iterator[str]:
        """With run(stream=True): the new text (of the program, or of variable `var_name`) as it is
        generated, until the program (or that variable) is done. Otherwise: the whole value, once."""
        if not self.stream:
            yield self.text() if var_name is None else self.get_var(var_name)
            return
        sent = 0
        while True:
            with self._cond:
                def ready() -> bool:
                    return self._finished or var_name in self._done_vars or len(self._source(var_name)) > sent
                self._cond.wait_for(ready)
                piece = self._source(var_name)[sent:]
                done = self._finished or var_name in self._done_vars
            sent += len(piece)
            if piece:
                yield piece
            if done:
                return

    def _source(self, var_name: str | None) -> str:
        return self._text if var_name is None else str(self._vars.get(var_name, ""))

    async def text_async_iter(self, var_name: str | None = None,
                              return_meta_data: bool = False) -> AsyncIterator[Any]:
        """`text_iter` for asyncio: each wait runs in a thread, so the event loop stays free."""
        loop, pieces, end = asyncio.get_running_loop(), self.text_iter(var_name), object()
        while (piece := await loop.run_in_executor(None, next, pieces, end)) is not end:
            yield (piece, self._meta.get(var_name)) if return_meta_data else piece


def split_reasoning(text: str) -> tuple[str, str]:
    """(reasoning, answer) of a reasoning model's output: the reasoning ends at `</think>` (its opening
    tag may be missing: DeepSeek-R1's template opens it in the prompt); without `</think>` the text is
    all reasoning if it opened with `<think>` (cut short), else all answer."""
    head, sep, tail = text.partition("</think>")
    if sep:
        return head.strip().removeprefix("<think>").strip(), tail.lstrip()
    if text.lstrip().startswith("<think>"):
        return text.lstrip().removeprefix("<think>").strip(), ""
    return "", text
