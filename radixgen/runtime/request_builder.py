"""Turning a caller's prompts and sampling parameters into engine requests (Req), one per prompt and
sample: validation that needs no engine state happens here, on the caller's thread."""
from __future__ import annotations

import itertools
import uuid
from typing import Any, Callable

from .request import Req, sample_rid
from .sampling_params import MODEL_DEFAULTS, SamplingParams

Prompt = str | list[str] | None


def build_reqs(tokenizer: Any, prompt: Prompt, input_ids: Any, sampling_params: Any, stream: bool,
               sink: Callable[[Req], None], extra: dict[str, Any], rid: str | list[str] | None,
               ids: "itertools.count[int]", defaults: dict[str, Any] | None = None) -> tuple[list[Req], bool]:
    """-> (the requests, whether the call was one prompt with one sample). `prompt` (text) or
    `input_ids` (tokens), one or a list; `sampling_params` one for all or a list, each a
    SamplingParams, a dict or None; `extra` laid over every one of them; `rid` names the requests
    (a sample j of n > 1 is `sample_rid(rid, j)`); `ids` numbers the unnamed ones uniquely;
    `defaults` fill the sampling fields a caller left unset (the model's, see model_sampling_defaults)."""
    if (prompt is None) == (input_ids is None):
        raise ValueError("give exactly one of prompt and input_ids")
    single = isinstance(prompt, str) or (input_ids is not None and input_ids and isinstance(input_ids[0], int))
    if single:
        ids_list = [tokenizer.encode(prompt)] if prompt is not None else [list(input_ids)]
    else:
        items = prompt if prompt is not None else input_ids
        if not isinstance(items, list) or not items:
            raise ValueError("prompt must be a string or a non-empty list of strings (input_ids likewise)")
        ids_list = [tokenizer.encode(p) if isinstance(p, str) else list(p) for p in items]
    params = sampling_params if isinstance(sampling_params, list) else [sampling_params] * len(ids_list)
    if len(params) != len(ids_list):
        raise ValueError(f"got {len(params)} sampling_params for {len(ids_list)} prompts")
    rids = rid if isinstance(rid, list) else [rid] * len(ids_list)
    if len(rids) != len(ids_list):
        raise ValueError(f"got {len(rids)} rids for {len(ids_list)} prompts")
    reqs = []
    for prompt_ids, sp, given in zip(ids_list, params, rids):
        sp = SamplingParams.from_any(sp).with_defaults(defaults or {})
        if extra:
            sp = sp.replace(**extra)
        for j in range(sp.n):
            # n samples: n requests sharing the prompt (the radix cache shares its KV), seeds apart
            one = sp.replace(n=1, seed=None if sp.seed is None else (sp.seed + j) % 2 ** 64) if sp.n > 1 else sp
            name = given if given is not None else uuid.uuid4().hex[:12]
            name = sample_rid(name, j) if sp.n > 1 else name
            reqs.append(Req(name if given is not None else f"{name}-{next(ids)}", list(prompt_ids), one, sink,
                            stream))
    return reqs, single and len(reqs) == 1


def logprob_args(return_logprob: bool, logprob_start_len: int | None, top_logprobs_num: int | None) -> dict:
    """The request-level logprob options (SGLang puts them beside sampling_params) as overrides."""
    extra: dict[str, Any] = {}
    if return_logprob:
        extra["return_logprob"] = True
    if logprob_start_len is not None:
        extra["logprob_start_len"] = logprob_start_len
    if top_logprobs_num:
        extra["top_logprobs_num"] = top_logprobs_num
    return extra


def model_sampling_defaults(generation_config: Any) -> dict[str, Any]:
    """The sampling a model's generation_config.json sets (the MODEL_DEFAULTS it names: transformers
    leaves the others None), e.g. Qwen2.5-Instruct's temperature 0.7, top_p 0.8, top_k 20."""
    if generation_config is None:
        return {}
    values = {name: getattr(generation_config, name, None) for name in MODEL_DEFAULTS}
    return {name: value for name, value in values.items() if value is not None}
