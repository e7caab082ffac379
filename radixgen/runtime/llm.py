"""LLM: vLLM's offline API over the same Engine, so vLLM's offline example runs by changing its import."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .engine import Engine
from .sampling_params import SamplingParams


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    finish_reason: str | None          # "stop" | "length" | "abort"
    stop_reason: int | str | None = None
    cumulative_logprob: float | None = None
    logprobs: list[dict[int, float]] | None = None


@dataclass
class RequestOutput:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput] = field(default_factory=list)
    finished: bool = True


class LLM:
    def __init__(self, model: str | None = None, **kwargs: Any):
        self.engine = Engine(model, **kwargs)

    def get_tokenizer(self) -> Any:
        return self.engine.tokenizer

    def generate(self, prompts: Any, sampling_params: SamplingParams | list | dict | None = None,
                 use_tqdm: bool = False) -> list[RequestOutput]:
        """prompts: a string, a list of strings, or {"prompt_token_ids": [...]} dicts."""
        items = prompts if isinstance(prompts, list) else [prompts]
        texts = [p if isinstance(p, str) else None for p in items]
        ids = [self._ids(p) for p in items]
        return self._run(texts, ids, sampling_params)

    def chat(self, messages: list[dict] | list[list[dict]], sampling_params: Any = None,
             use_tqdm: bool = False) -> list[RequestOutput]:
        convs = messages if messages and isinstance(messages[0], list) else [messages]
        return self._run([None] * len(convs), [self.engine.apply_chat_template(c) for c in convs], sampling_params)

    def _ids(self, prompt: Any) -> list[int]:
        if isinstance(prompt, str):
            return self.engine.tokenizer.encode(prompt)
        if isinstance(prompt, dict) and "prompt_token_ids" in prompt:
            return list(prompt["prompt_token_ids"])
        if isinstance(prompt, dict) and "prompt" in prompt:
            return self.engine.tokenizer.encode(prompt["prompt"])
        raise ValueError("a prompt must be a string or a dict with 'prompt' or 'prompt_token_ids'")

    def _run(self, texts: list[str | None], ids: list[list[int]], sampling_params: Any) -> list[RequestOutput]:
        if not ids:
            raise ValueError("no prompts given")
        params = sampling_params if isinstance(sampling_params, list) else [sampling_params] * len(ids)
        params = [SamplingParams.from_any(p) for p in params]
        flat = self.engine.generate(input_ids=ids, sampling_params=params)
        results, at = [], 0
        for text, prompt_ids, p in zip(texts, ids, params):
            outs = flat[at: at + p.n]
            at += p.n
            results.append(RequestOutput(outs[0]["meta_info"]["id"], text, prompt_ids,
                                         [_completion(i, o) for i, o in enumerate(outs)]))
        return results


def _completion(index: int, out: dict) -> CompletionOutput:
    reason = out["meta_info"]["finish_reason"] or {}
    lps = out["meta_info"].get("output_token_logprobs")
    tops = out["meta_info"].get("output_top_logprobs")
    logprobs = None
    if lps is not None:
        logprobs = [{t: lp, **{tt: ll for ll, tt, _ in top}} for (lp, t, _), top in zip(lps, tops)]
    return CompletionOutput(index, out["text"], out["output_ids"], reason.get("type"), reason.get("matched"),
                            sum(lp for lp, _, _ in lps) if lps else None, logprobs)
