"""Backends: what programs run on. A backend gives one batched call in SGLang's `/generate` contract
(and its streaming form); gen, select and the prefix commit are built on it here, once, for the
in-process Engine and for RuntimeEndpoint alike."""
from __future__ import annotations

import dataclasses
import weakref
from abc import ABC, abstractmethod
from typing import Any, Iterator

from radixgen.runtime.engine import Engine
from radixgen.runtime.sampling_params import SamplingParams

from .chat_template import RoleTemplate
from .choices import ChoicesDecision, ChoicesSamplingMethod

Prompt = str | list[int]


class Backend(ABC):
    tokenizer: Any           # a transformers tokenizer: the same one the server tokenizes with
    template: RoleTemplate

    @abstractmethod
    def _generate(self, prompts: list[Prompt], params: list[SamplingParams]) -> list[dict[str, Any]]:
        """One batched request, a SamplingParams per prompt (their logprob options all equal, as SGLang's
        servers take them once per request); SGLang's output dicts, in order."""

    @abstractmethod
    def _generate_stream(self, prompt: str, params: SamplingParams) -> Iterator[dict[str, Any]]:
        """One streaming request: output dicts whose `text` holds only the new part."""

    def flush_cache(self) -> bool:
        return False

    def get_server_info(self) -> dict[str, Any]:
        raise NotImplementedError

    def generate(self, text: str, params: SamplingParams) -> tuple[str, dict[str, Any]]:
        out = self._generate([text], [params])[0]
        _raise_if_aborted(out["meta_info"])
        return out["text"], out["meta_info"]

    def generate_stream(self, text: str, params: SamplingParams) -> Iterator[tuple[str, dict[str, Any]]]:
        for out in self._generate_stream(text, params):
            _raise_if_aborted(out["meta_info"])
            yield out["text"], out["meta_info"]

    def get_model_name(self) -> str:
        """The served model's path (SGLang's RuntimeEndpoint.get_model_name)."""
        raise NotImplementedError

    @property
    def endpoint(self) -> "Backend":
        """SGLang programs reach the endpoint of a Runtime as `backend.endpoint`: here it is the backend."""
        return self

    def cache_prefix(self, text: str) -> None:
        """Prefill `text` only, so that the requests that follow (forks, a batch) find it in the radix cache."""
        self._generate([text], [SamplingParams(max_new_tokens=0)])

    def select(self, text: str, choices: list[str], method: ChoicesSamplingMethod) -> ChoicesDecision:
        """Score every choice as the continuation of `text` in one batched prefill (max_new_tokens=0);
        unconditional_likelihood_normalized adds a second batch: the choices without the text."""
        prefix_ids = self.tokenizer.encode(text)
        fulls = [self.tokenizer.encode(text + choice) for choice in choices]
        # A choice's tokens start where its tokenization leaves the prefix's: the token that merges the
        # prefix's end with the choice's start (" Paris" after "is") is the choice's. At least one is scored.
        starts = [min(_common_len(prefix_ids, ids), len(ids) - 1) for ids in fulls]
        # One logprob_start_len for the batch (SGLang's servers take one), the earliest; each choice
        # then drops the entries before its own start.
        first = min(starts)
        outs = [o["meta_info"] for o in self._generate(fulls, [_scoring(first)] * len(choices))]
        cond = [_complete(m["input_token_logprobs"], ids, first, self.tokenizer)[start - first:]
                for m, ids, start in zip(outs, fulls, starts)]
        uncond = None
        if method.requires_unconditional_logprobs:
            alone = [ids[start:] for ids, start in zip(fulls, starts)]
            uncond = [_complete(o["meta_info"]["input_token_logprobs"], ids, 0, self.tokenizer)
                      for o, ids in zip(self._generate(alone, [_scoring(0)] * len(choices)), alone)]
        return method(choices=choices, normalized_prompt_logprobs=[_mean(c) for c in cond],
                      input_token_logprobs=cond, output_token_logprobs=[m["output_token_logprobs"] for m in outs],
                      unconditional_token_logprobs=uncond)


def _raise_if_aborted(meta: dict[str, Any]) -> None:
    """A request the engine refused or aborted (a bad regex, a context overflow) fails the program
    with the engine's message, as SGLang's frontend does, instead of reading as empty text."""
    reason = meta.get("finish_reason") or {}
    if isinstance(reason, dict) and reason.get("type") == "abort":
        raise ValueError(f"the request was aborted: {reason.get('message') or 'no reason given'}")


def _scoring(start: int) -> SamplingParams:
    return SamplingParams(max_new_tokens=0, temperature=0.0, return_logprob=True, logprob_start_len=start)


def _complete(entries: list[list[Any]], ids: Prompt, start: int, tokenizer: Any) -> list[list[Any]]:
    """The prompt logprobs of tokens [start, len(ids)). Some servers omit the leading entries that have
    no prediction (a one-token prompt from position 0): restore them as [None, id, text]."""
    missing = len(ids) - start - len(entries)
    head = [[None, t, tokenizer.decode([t])] for t in ids[start: start + missing]]
    return head + list(entries)


def _common_len(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _mean(tokens: list[list[Any]]) -> float:
    values = [t[0] for t in tokens if t[0] is not None]
    return sum(values) / len(values) if values else 0.0


class EngineBackend(Backend):
    """The in-process `radixgen.Engine`: no HTTP, the engine's own tokenizer."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.tokenizer = engine.tokenizer
        self.template = RoleTemplate.from_tokenizer(engine.tokenizer)

    def _generate(self, prompts: list[Prompt], params: list[SamplingParams]) -> list[dict[str, Any]]:
        key = "prompt" if isinstance(prompts[0], str) else "input_ids"
        return self.engine.generate(**{key: prompts}, sampling_params=params)

    def _generate_stream(self, prompt: str, params: SamplingParams) -> Iterator[dict[str, Any]]:
        return self.engine.generate(prompt=prompt, sampling_params=params, stream=True)

    def flush_cache(self) -> bool:
        return self.engine.flush_cache()

    def get_model_name(self) -> str:
        return str(self.engine.model_path)

    def get_server_info(self) -> dict[str, Any]:
        """The engine's config and counters (the server's /server_info without its own settings)."""
        return {**dataclasses.asdict(self.engine.config), "model_path": self.get_model_name(),
                "stats": self.engine.get_stats()}


# One EngineBackend per Engine: the role template is read once, and the backend dies with its engine.
_engine_backends: "weakref.WeakKeyDictionary[Engine, EngineBackend]" = weakref.WeakKeyDictionary()
_default_backend: Backend | None = None


def as_backend(backend: Backend | Engine | None) -> Backend:
    """A Backend from a Backend, an Engine, or None (the default set by set_default_backend)."""
    if backend is None:
        if _default_backend is None:
            raise ValueError("no backend: pass backend=... or call set_default_backend(radixgen.Engine()) "
                             "or set_default_backend(RuntimeEndpoint(url)) first")
        return _default_backend
    if isinstance(backend, Backend):
        return backend
    if isinstance(backend, Engine):
        if backend not in _engine_backends:
            _engine_backends[backend] = EngineBackend(backend)
        return _engine_backends[backend]
    if isinstance(getattr(backend, "endpoint", None), Backend):  # a Runtime: its endpoint
        return backend.endpoint
    raise ValueError(f"a backend must be a radixgen.Engine or a RuntimeEndpoint, got {type(backend).__name__}")


def set_default_backend(backend: Backend | Engine | None) -> None:
    """The backend that programs run on when run() is given none (None: no default)."""
    global _default_backend
    _default_backend = None if backend is None else as_backend(backend)


def get_default_backend() -> Backend | None:
    return _default_backend


def flush_cache(backend: Backend | Engine | None = None) -> bool:
    """Empty the backend's prefix cache (refused, False, while requests are in flight)."""
    return as_backend(backend).flush_cache()


def get_server_info(backend: Backend | Engine | None = None) -> dict[str, Any]:
    """The backend's config and counters (SGLang's sgl.get_server_info)."""
    return as_backend(backend).get_server_info()
