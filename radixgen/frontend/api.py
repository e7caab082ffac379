"""The language's building blocks: gen, select and the chat roles (SGLang's names and meanings)."""
from __future__ import annotations

from typing import Any

from .choices import ChoicesSamplingMethod, token_length_normalized
from .ir import (DTYPE_REGEX, Expr, ExprList, Gen, RoleBegin, RoleEnd, Select, SeparateReasoning, parts,
                 sampling_overrides)

_DTYPE_NAMES = {int: "int", float: "float", bool: "bool", str: "str"}


def gen(name: str | None = None, max_tokens: int | None = None, min_tokens: int | None = None,
        n: int | None = None, stop: str | list[str] | None = None, stop_token_ids: list[int] | None = None,
        stop_regex: str | list[str] | None = None, temperature: float | None = None, top_p: float | None = None,
        top_k: int | None = None, min_p: float | None = None, frequency_penalty: float | None = None,
        presence_penalty: float | None = None, ignore_eos: bool | None = None, return_logprob: bool | None = None,
        logprob_start_len: int | None = None, top_logprobs_num: int | None = None,
        return_text_in_logprobs: bool | None = None, dtype: type | str | None = None,
        choices: list[str] | None = None, choices_method: ChoicesSamplingMethod | None = None,
        regex: str | None = None, json_schema: str | dict | None = None, **sampling: Any) -> Expr:
    """Generate text into variable `name`. The arguments are SGLang's, in SGLang's order (so
    `gen("x", 64)` is 64 tokens at most); other keywords are SamplingParams' (vLLM's names too:
    repetition_penalty, seed, logit_bias, ...). Those not given come from run().
    `dtype` (int, float, bool, str) constrains the output to that type's literal with SGLang's
    regexes (ir.REGEX_*); `choices` makes this a `select`."""
    if stop_regex:
        raise ValueError("stop_regex is not supported: use stop (strings) or regex")
    if choices:
        return select(name, choices, temperature=temperature or 0.0,
                      choices_method=choices_method or token_length_normalized)
    if dtype is not None:
        dtype = _DTYPE_NAMES.get(dtype, dtype)  # type: ignore[arg-type]
        if dtype not in DTYPE_REGEX:
            raise ValueError(f"dtype must be one of int, float, bool, str; got {dtype!r}")
    given = dict(max_tokens=max_tokens, min_tokens=min_tokens, n=n, stop=stop, stop_token_ids=stop_token_ids,
                 temperature=temperature, top_p=top_p, top_k=top_k, min_p=min_p,
                 frequency_penalty=frequency_penalty, presence_penalty=presence_penalty, ignore_eos=ignore_eos,
                 return_logprob=return_logprob, logprob_start_len=logprob_start_len,
                 top_logprobs_num=top_logprobs_num, return_text_in_logprobs=return_text_in_logprobs,
                 regex=regex, json_schema=json_schema, **sampling)
    return Gen(name, sampling_overrides(given), dtype)  # type: ignore[arg-type]


def gen_int(name: str | None = None, max_tokens: int | None = None, n: int | None = None,
            stop: str | list[str] | None = None, **sampling: Any) -> Expr:
    """Generate an integer literal (as text; `int(s[name])` reads it)."""
    return gen(name, max_tokens, n=n, stop=stop, dtype=int, **sampling)


def gen_string(name: str | None = None, max_tokens: int | None = None, n: int | None = None,
               stop: str | list[str] | None = None, **sampling: Any) -> Expr:
    """Generate a double-quoted string literal."""
    return gen(name, max_tokens, n=n, stop=stop, dtype=str, **sampling)


def image(expr: Any) -> Expr:
    """SGLang's image input: refused, radixgen serves text-only models."""
    raise ValueError("image inputs are not supported: radixgen serves text-only language models")


def video(path: str, num_frames: int) -> Expr:
    """SGLang's video input: refused, radixgen serves text-only models."""
    raise ValueError("video inputs are not supported: radixgen serves text-only language models")


def separate_reasoning(expr: Any = None, model_type: str | None = None) -> ExprList:
    """After `expr` (a named gen or select, or a list of them) runs, move its reasoning (the text
    up to `</think>`, as DeepSeek-R1, Qwen3 and their kin write it) into `<name>_reasoning_content`
    and keep the rest as `<name>`. `model_type` is accepted for SGLang's signature: every
    reasoning model we know of uses the same tags."""
    items = parts(expr) if expr is not None else []
    names = [e.name for e in items if isinstance(e, (Gen, Select))]
    if not names or any(n is None for n in names):
        raise ValueError("separate_reasoning needs a named gen or select (its variable is split)")
    return ExprList([*items, *(SeparateReasoning(n) for n in names)])


def select(name: str | None = None, choices: list[str] | None = None, temperature: float = 0.0,
           choices_method: ChoicesSamplingMethod = token_length_normalized) -> Expr:
    """Append the most likely of `choices`, scored from the logprobs of all of them in one batched
    prefill. `choices_method` decides how token logprobs compare (see choices.py)."""
    if not choices or not all(isinstance(c, str) and c for c in choices):
        raise ValueError(f"select needs a non-empty list of non-empty strings, got {choices!r}")
    if temperature > 1e-5:
        raise ValueError(f"select picks the most likely choice: temperature must be 0, got {temperature}")
    if not isinstance(choices_method, ChoicesSamplingMethod):
        raise ValueError("choices_method must be a ChoicesSamplingMethod, e.g. greedy_token_selection")
    return Select(name, list(choices), choices_method)


def _role(role: str, expr: Any = None) -> ExprList:
    inner = [] if expr is None else parts(expr)
    return ExprList([RoleBegin(role), *inner, RoleEnd(role)])


def system(expr: Any = None) -> ExprList:
    return _role("system", expr)


def user(expr: Any = None) -> ExprList:
    return _role("user", expr)


def assistant(expr: Any = None) -> ExprList:
    return _role("assistant", expr)


def system_begin() -> Expr:
    return RoleBegin("system")


def system_end() -> Expr:
    return RoleEnd("system")


def user_begin() -> Expr:
    return RoleBegin("user")


def user_end() -> Expr:
    return RoleEnd("user")


def assistant_begin() -> Expr:
    return RoleBegin("assistant")


def assistant_end() -> Expr:
    return RoleEnd("assistant")
