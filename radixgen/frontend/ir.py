"""What `s += ...` accepts: plain-data expressions. The interpreter (interpreter.py) gives them meaning.

Sampling keywords are not listed here: a `gen` keeps the keywords it was given, checked and renamed
to SamplingParams' names, and the interpreter lays them over the `run()` defaults.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field, fields
from typing import Any

from radixgen.runtime.sampling_params import ALIASES, SamplingParams

from .choices import ChoicesSamplingMethod

# SGLang keywords with no meaning here, accepted so that SGLang programs run unchanged:
# our outputs always carry token text in their logprobs.
IGNORED_KEYWORDS = frozenset({"return_text_in_logprobs"})
SAMPLING_NAMES = (frozenset(f.name for f in fields(SamplingParams)) | set(ALIASES) | IGNORED_KEYWORDS
                  | {"logprobs", "prompt_logprobs"})

# gen(dtype=...) becomes a regex constraint: SGLang's regexes (sglang/lang/ir.py), which programs
# also import by these names. Numbers may end in spaces or newlines and also stop at " " or "\n"
# (DTYPE_STOP): a model that wants to end "24" with a newline can, and the stop trims it; without
# that room it writes digits until max_tokens.
REGEX_INT = r"[-+]?[0-9]+[ \n]*"
REGEX_FLOAT = r"[-+]?[0-9]*\.?[0-9]+[ \n]*"
REGEX_BOOL = r"(True|False)"
REGEX_STR = r"\"[\w\d\s]*\""
DTYPE_REGEX: dict[str, str] = {"int": REGEX_INT, "float": REGEX_FLOAT, "bool": REGEX_BOOL, "str": REGEX_STR}
DTYPE_STOP: dict[str, list[str]] = {"int": [" ", "\n"], "float": [" ", "\n"]}


def sampling_overrides(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keywords given (a None value means not given) under SamplingParams' names.
    Raises ValueError for an unknown keyword or a bad value, at the call that gave it."""
    given = {ALIASES.get(k, k): v for k, v in kwargs.items() if v is not None and k not in IGNORED_KEYWORDS}
    params = SamplingParams(**given)
    if params.n != 1:
        raise ValueError(f"n={params.n} is not supported in programs: use s.fork({params.n}) for parallel samples")
    return given


def unknown_keyword_error(key: str, known: list[str]) -> ValueError:
    hint = difflib.get_close_matches(key, known + sorted(SAMPLING_NAMES), n=1)
    return ValueError(f"unexpected argument {key!r}: not one of the program's inputs {known} nor a sampling "
                      f"parameter" + (f"; did you mean {hint[0]!r}?" if hint else ""))


class StopTrace(Exception):
    """Raised while tracing (program.py) where the program first needs the model or an input."""


class Expr:
    """Base of all expressions; `"text" + gen(...)` and `gen(...) + "text"` build an ExprList."""

    def __add__(self, other: Any) -> "ExprList":
        return ExprList(parts(self) + parts(other))

    def __radd__(self, other: Any) -> "ExprList":
        return ExprList(parts(other) + parts(self))


@dataclass(eq=False)
class Text(Expr):
    value: str


@dataclass(eq=False)
class ExprList(Expr):
    items: list[Expr]


@dataclass(eq=False)
class Gen(Expr):
    name: str | None
    sampling: dict[str, Any] = field(default_factory=dict)  # canonical names, only those given
    dtype: str | None = None

    def overrides(self) -> dict[str, Any]:
        """The keywords this gen lays over the run() defaults, dtype turned into a regex."""
        if self.dtype is None:
            return self.sampling
        extra: dict[str, Any] = {"regex": DTYPE_REGEX[self.dtype]}
        if self.dtype in DTYPE_STOP:
            stop = self.sampling.get("stop") or []
            extra["stop"] = ([stop] if isinstance(stop, str) else list(stop)) + DTYPE_STOP[self.dtype]
        return {**self.sampling, **extra}


@dataclass(eq=False)
class Select(Expr):
    name: str | None
    choices: list[str]
    method: ChoicesSamplingMethod


@dataclass(eq=False)
class RoleBegin(Expr):
    role: str


@dataclass(eq=False)
class RoleEnd(Expr):
    role: str


@dataclass(eq=False)
class SeparateReasoning(Expr):
    name: str  # the variable whose reasoning moves to name + "_reasoning_content"


@dataclass(eq=False)
class VarScopeBegin(Expr):
    name: str


@dataclass(eq=False)
class VarScopeEnd(Expr):
    name: str


class Placeholder:
    """An input of a program being traced without inputs (Program.cache): any use of it ends the
    trace, so the traced text is what the program writes before it reads an input."""

    def _stop(self, *args: Any, **kwargs: Any) -> Any:
        raise StopTrace

    __str__ = __format__ = __add__ = __radd__ = __getitem__ = __iter__ = __len__ = __bool__ = _stop
    __eq__ = __lt__ = __contains__ = __getattr__ = _stop  # type: ignore[assignment]
    __hash__ = None  # type: ignore[assignment]


def parts(x: Any) -> list[Expr]:
    """Flatten what the user adds into a list of expressions; reject what is not text or an expression."""
    if isinstance(x, str):
        return [Text(x)]
    if isinstance(x, ExprList):
        return list(x.items)
    if isinstance(x, Expr):
        return [x]
    if isinstance(x, Placeholder):
        raise StopTrace
    raise TypeError(f"cannot add a {type(x).__name__} to a program: add a str, gen(...), select(...) or a role "
                    f"(convert other values with str())")
