"""`@function`: a Python function over a ProgramState, run once (`run`) or over many inputs (`run_batch`)."""
from __future__ import annotations

import inspect
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterator

import tqdm

from radixgen.runtime.engine import Engine
from radixgen.runtime.sampling_params import SamplingParams

from .backend import Backend, Prompt, as_backend
from .choices import ChoicesDecision, ChoicesSamplingMethod
from .global_config import global_config
from .interpreter import ProgramState
from .ir import SAMPLING_NAMES, Placeholder, StopTrace, sampling_overrides, unknown_keyword_error

# run_batch commits the batch's common prefix to the cache first when it is at least this long:
# shorter ones cost a request for little reuse.
MIN_PRECACHE_CHARS = 64
MAX_AUTO_THREADS = 128


class Program:
    def __init__(self, func: Callable[..., Any], bind_arguments: dict[str, Any] | None = None):
        names = list(inspect.signature(func).parameters)
        if not names or names[0] != "s":
            raise ValueError(f'the first argument of @function {func.__name__} must be "s" (the program state)')
        self.func, self.arg_names = func, names[1:]
        self.bind_arguments = dict(bind_arguments or {})

    def bind(self, **kwargs: Any) -> "Program":
        """A copy with some inputs fixed."""
        for key in kwargs:
            if key not in self.arg_names:
                raise unknown_keyword_error(key, self.arg_names)
        return Program(self.func, {**self.bind_arguments, **kwargs})

    def run(self, *args: Any, stream: bool = False, backend: Backend | Engine | None = None,
            **kwargs: Any) -> ProgramState:
        """Run with these inputs; other keywords are sampling defaults for every gen (a gen overrides).
        With stream=True the program runs in a thread and the state returns at once (see text_iter)."""
        inputs, sampling = self._split(kwargs)
        inputs.update(zip(self.arg_names, args))
        state = ProgramState(as_backend(backend), SamplingParams(**sampling), stream=stream)
        if stream:
            threading.Thread(target=self._execute, args=(state, inputs, True), daemon=True).start()
        else:
            self._execute(state, inputs, capture=False)
        return state

    def run_batch(self, batch_kwargs: list[dict[str, Any]] | list[tuple], *, num_threads: int | str = "auto",
                  progress_bar: bool = False, backend: Backend | Engine | None = None,
                  generator_style: bool = False, **sampling: Any) -> list[ProgramState] | Iterator[ProgramState]:
        """Run once per input set, in parallel threads (the engine batches their requests). A failing
        program keeps its error in its state's s.error(); the others go on. With generator_style the
        states come one by one, in input order, each as soon as it (and those before it) finished."""
        states = self._run_batch(batch_kwargs, num_threads, progress_bar, backend, sampling)
        if generator_style:
            return _in_order(states)
        return [future.result() for future in states]

    def _run_batch(self, batch_kwargs: list[dict[str, Any]] | list[tuple], num_threads: int | str,
                   progress_bar: bool, backend: Backend | Engine | None,
                   sampling: dict[str, Any]) -> list["Future[ProgramState]"]:
        if not isinstance(batch_kwargs, (list, tuple)):
            raise ValueError("batch_kwargs must be a list of dicts (or of argument tuples)")
        rows = [dict(kw) if isinstance(kw, dict) else dict(zip(self.arg_names, kw)) for kw in batch_kwargs]
        rows = [{**self.bind_arguments, **row} for row in rows]
        if not rows:
            return []
        extra = set(sampling) - SAMPLING_NAMES
        if extra:
            raise unknown_keyword_error(sorted(extra)[0], self.arg_names)
        chosen = as_backend(backend)
        defaults = SamplingParams(**sampling_overrides(sampling))
        self._precache(rows, chosen)
        workers = min(len(rows), MAX_AUTO_THREADS if num_threads == "auto" else int(num_threads))
        pool = ThreadPoolExecutor(max(workers, 1), thread_name_prefix="radixgen-batch")
        bar, lock, done = tqdm.tqdm(total=len(rows), disable=not progress_bar), threading.Lock(), [0]

        def one(row: dict[str, Any]) -> ProgramState:
            state = ProgramState(chosen, defaults)
            self._execute(state, row, True)
            with lock:  # programs end in any order: the bar closes with the last of them
                done[0] += 1
                bar.update()
                if done[0] == len(rows):
                    bar.close()
            return state
        futures = [pool.submit(one, row) for row in rows]
        pool.shutdown(wait=False)  # its threads exit once the last program is done
        return futures

    def cache(self, backend: Backend | Engine | None = None) -> None:
        """Prefill the text this program writes before it first reads an input or calls the model
        (SGLang's program.cache), so that every later run finds it in the prefix cache."""
        chosen = as_backend(backend)
        inputs = {name: self.bind_arguments.get(name, Placeholder()) for name in self.arg_names}
        prefix = trace_prefix(self.func, inputs, chosen)
        if prefix and len(prefix) >= MIN_PRECACHE_CHARS:
            chosen.cache_prefix(prefix)

    def __call__(self, *args: Any, **kwargs: Any) -> ProgramState:
        return self.run(*args, **kwargs)

    def _split(self, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Program inputs (the function's own argument names win) apart from sampling keywords."""
        inputs = dict(self.bind_arguments)
        sampling = {}
        for key, value in kwargs.items():
            if key in self.arg_names:
                inputs[key] = value
            elif key in SAMPLING_NAMES:
                sampling[key] = value
            else:
                raise unknown_keyword_error(key, self.arg_names)
        return inputs, sampling_overrides(sampling)

    def _execute(self, state: ProgramState, inputs: dict[str, Any], capture: bool) -> None:
        """Call the function. With `capture` (batches, streams) its exception goes to s.error()."""
        try:
            state.ret_value = self.func(state, **inputs)
        except Exception as exc:
            if not capture:
                raise
            state._fail(exc)
        finally:
            state._finish()
            if global_config.verbosity >= 2:
                print(state._text)

    def _precache(self, rows: list[dict[str, Any]], backend: Backend) -> None:
        """Prefill the text that all programs of the batch start with, once, before they run: started
        together, they would all miss the cache and each compute it."""
        if len(rows) < 2 or not global_config.enable_precache_with_tracing:
            return
        prefixes = [p for p in (trace_prefix(self.func, row, backend) for row in rows) if p is not None]
        common = os.path.commonprefix(prefixes) if prefixes else ""
        if len(common) >= MIN_PRECACHE_CHARS:
            backend.cache_prefix(common)


def function(func: Callable[..., Any] | None = None, num_api_spec_tokens: int | None = None) -> Any:
    """Decorator: `@function` or `@function(...)`. The function's first argument is the state `s`.
    `num_api_spec_tokens` (SGLang's speculative execution for OpenAI-style API backends, which
    cannot continue a partial assistant turn) is accepted and has nothing to do here: our
    backends generate each gen in place, so a program runs the same with or without it."""
    if func is None:
        return Program
    return Program(func)


def _in_order(futures: list["Future[ProgramState]"]) -> Iterator[ProgramState]:
    for future in futures:
        yield future.result()


class _TraceBackend(Backend):
    """Stands in for the backend while tracing: roles render, anything that needs the model stops."""

    def __init__(self, real: Backend):
        self.tokenizer, self.template = real.tokenizer, real.template

    def _generate(self, prompts: list[Prompt], params: list[SamplingParams]) -> list[dict[str, Any]]:
        raise StopTrace

    def _generate_stream(self, prompt: str, params: SamplingParams) -> Iterator[dict[str, Any]]:
        raise StopTrace

    def select(self, text: str, choices: list[str], method: ChoicesSamplingMethod) -> ChoicesDecision:
        raise StopTrace


def trace_prefix(func: Callable[..., Any], inputs: dict[str, Any], backend: Backend) -> str | None:
    """The text a program builds before its first model call or read; None if it fails before that
    (the real run will report why)."""
    state = ProgramState(_TraceBackend(backend), SamplingParams(), tracing=True)
    try:
        func(state, **inputs)
    except StopTrace:
        pass
    except Exception:  # noqa: BLE001 - the program's own bug: it shows in the real run's s.error()
        return None
    return state._text
