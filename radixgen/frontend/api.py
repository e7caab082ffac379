"""The language's building blocks: gen, select and the chat roles (SGLang's names and meanings)."""
from __future__ import annotations

from typing import Any

from .choices import ChoicesSamplingMethod, token_length_normalized
from .ir import DTYPE_REGEX, Expr, ExprList, Gen, RoleBegin, RoleEnd, Select, parts, sampling_overrides

_DTYPE_NAMES = {int: "int", float: "float", bool: "bool", str: "str"}


def gen(name: str | None = None, *, dtype: type | str | None = None, choices: list[str] | None = None,
        choices_method: ChoicesSamplingMethod | None = None, **sampling: Any) -> Expr:
    """Generate text into variable `name`. Sampling keywords are SamplingParams' (SGLang's and vLLM's
    names: max_tokens, stop, temperature, top_p, top_k, min_p, frequency_penalty, presence_penalty,
    ignore_eos, regex, json_schema, return_logprob, ...); those not given come from run().
    `dtype` (int, float, bool, str) constrains the output to that type's literal; `choices` makes this
    a `select`."""
    if choices is not None:
        return select(name, choices, temperature=sampling.get("temperature") or 0.0,
                      choices_method=choices_method or token_length_normalized)
    if dtype is not None:
        dtype = _DTYPE_NAMES.get(dtype, dtype)  # type: ignore[arg-type]
        if dtype not in DTYPE_REGEX:
            raise ValueError(f"dtype must be one of int, float, bool, str; got {dtype!r}")
    return Gen(name, sampling_overrides(sampling), dtype)  # type: ignore[arg-type]


def gen_int(name: str | None = None, **sampling: Any) -> Expr:
    """Generate an integer literal (as text; `int(s[name])` reads it)."""
    return gen(name, dtype=int, **sampling)


def gen_string(name: str | None = None, **sampling: Any) -> Expr:
    """Generate a double-quoted string literal."""
    return gen(name, dtype=str, **sampling)


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
