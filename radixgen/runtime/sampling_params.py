"""SamplingParams: the one place sampling keywords are defined (SGLang's names, vLLM's accepted too).

The engine, the HTTP routes and the DSL all build this object; nothing else lists the keywords.
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any

from .loop_guard import ACTIONS, MIN_WINDOW

# Other projects' names for our fields: vLLM and the OpenAI API.
ALIASES = {
    "max_tokens": "max_new_tokens",
    "max_completion_tokens": "max_new_tokens",
    "min_tokens": "min_new_tokens",
    "include_stop_str_in_output": "no_stop_trim",
    "stop_token_id": "stop_token_ids",
    "top_logprobs": "top_logprobs_num",
    "guided_regex": "regex",          # vLLM's older extras (structured_outputs: openai_protocol.py)
    "guided_json": "json_schema",
    "guided_choice": "choices",
    "guided_grammar": "ebnf",
}
MAX_TOP_LOGPROBS = 20
MAX_STOP_STRINGS, MAX_STOP_LENGTH = 32, 512   # per request: each stop string is searched every token
MAX_LOGIT_BIAS = 1024                           # entries per request; each value in [-100, 100] (OpenAI)
GRAMMAR_KINDS = ("regex", "json_schema", "choices", "ebnf", "structural_tag")  # at most one per request
SEED_RANGE = (-(2 ** 63), 2 ** 64)              # what torch.Generator.manual_seed takes
GREEDY_TEMPERATURE = 1e-6                       # below it (SGLang: 1e-6 too) sampling is argmax
# What a model's generation_config.json may set for requests that leave it unset (vLLM takes the same).
MODEL_DEFAULTS = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty")


@dataclass(init=False)
class SamplingParams:
    max_new_tokens: int = 128
    min_new_tokens: int = 0
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1                   # -1 (or 0): off
    min_p: float = 0.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repetition_penalty: float = 1.0
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    ignore_eos: bool = False
    n: int = 1
    seed: int | None = None
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    no_stop_trim: bool = False
    regex: str | None = None
    json_schema: Any = None           # a dict or a JSON string
    choices: list[str] | None = None
    ebnf: str | None = None           # an EBNF / GBNF grammar (start rule `root`), see constrained/ebnf.py
    structural_tag: Any = None        # free text with schema-constrained tags (constrained/structural_tag.py)
    return_logprob: bool = False
    top_logprobs_num: int = 0
    logprob_start_len: int = -1       # >= 0: also return prompt logprobs from this position
    logit_bias: dict[int, float] = field(default_factory=dict)  # token id -> added to its logit
    loop_guard: int = 0               # > 0: end ("length") once the last N tokens repeat, see loop_guard.py
    loop_guard_action: str = "length"  # or "escape": ban the token that carries the loop on, see loop_guard.py

    def __init__(self, **kwargs: Any) -> None:
        names = {f.name: f for f in dataclasses.fields(self)}
        for name, f in names.items():
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            setattr(self, name, default)
        self._given: frozenset[str] = frozenset()  # the fields the caller set (model defaults fill the rest)
        for key, value in kwargs.items():
            if key == "logprobs":  # vLLM: number of top logprobs per output token
                if value is not None and value is not False:
                    self.return_logprob = True
                    self.top_logprobs_num = 0 if value is True else int(value)
                continue
            if key == "prompt_logprobs":  # vLLM: prompt logprobs with this many alternatives
                if value is not None:
                    self.return_logprob, self.logprob_start_len = True, 0
                    self.top_logprobs_num = max(self.top_logprobs_num, int(value))
                continue
            key = ALIASES.get(key, key)
            if key not in names:
                hint = difflib.get_close_matches(key, sorted(names), n=1)
                raise ValueError(f"unknown sampling parameter {key!r}"
                                 + (f"; did you mean {hint[0]!r}?" if hint else ""))
            if value is not None or key in ("seed", *GRAMMAR_KINDS):
                setattr(self, key, value)
                self._given |= {key}
        self._normalize()
        self.validate()

    @classmethod
    def from_any(cls, value: "SamplingParams | dict | None") -> "SamplingParams":
        if value is None:
            return cls()
        if isinstance(value, SamplingParams):
            return value
        if isinstance(value, dict):
            return cls(**value)
        raise ValueError(f"sampling_params must be a dict or SamplingParams, got {type(value).__name__}")

    def replace(self, **changes: Any) -> "SamplingParams":
        new = SamplingParams(**{**self.to_dict(), **changes})
        new._given = self._given | {ALIASES.get(k, k) for k in changes}
        return new

    def with_defaults(self, defaults: dict[str, Any]) -> "SamplingParams":
        """These parameters with `defaults` (a model's, see MODEL_DEFAULTS) for the fields the caller
        left unset: an explicit temperature=1.0 stays 1.0, an absent one takes the model's."""
        unset = {k: v for k, v in defaults.items() if k not in self._given}
        if not unset:
            return self
        new = SamplingParams(**{**self.to_dict(), **unset})
        new._given = self._given
        return new

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def _normalize(self) -> None:
        if not isinstance(self.stop, (str, list, tuple)):
            raise ValueError(f"stop must be a string or a list of strings, got {self.stop!r}")
        if not isinstance(self.stop_token_ids, (int, list, tuple)):
            raise ValueError(f"stop_token_ids must be a list of token ids, got {self.stop_token_ids!r}")
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        if isinstance(self.stop_token_ids, int):
            self.stop_token_ids = [self.stop_token_ids]
        self.stop, self.stop_token_ids = list(self.stop), list(self.stop_token_ids)
        if self.top_k == 0:
            self.top_k = -1
        if not isinstance(self.logit_bias, dict):
            raise ValueError(f"logit_bias must be an object mapping token ids to numbers, got {self.logit_bias!r}")
        bias: dict[int, float] = {}
        for key, value in self.logit_bias.items():  # JSON object keys arrive as strings (OpenAI's format)
            tid = int(key) if isinstance(key, str) and key.lstrip("-").isdigit() else key
            if not _is_int(tid) or not _is_num(value):
                raise ValueError(f"logit_bias maps token ids to numbers; got {key!r}: {value!r}")
            bias[tid] = float(value)
        self.logit_bias = bias
        if self.top_logprobs_num:
            self.return_logprob = True

    @property
    def is_greedy(self) -> bool:
        # A temperature this small is greedy in all but name, and dividing logits by it overflows
        # float32 (4e-293 made every probability NaN and sampled token 0 through a grammar mask).
        return self.temperature < GREEDY_TEMPERATURE or self.top_k == 1

    @property
    def grammar(self) -> tuple[str, Any] | None:
        """(kind, spec) of the constraint, or None."""
        given = [(k, getattr(self, k)) for k in GRAMMAR_KINDS if getattr(self, k) is not None]
        return given[0] if given else None

    def validate(self) -> None:
        """Raise ValueError naming the first out-of-range value."""
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(msg)
        need(_is_int(self.max_new_tokens) and self.max_new_tokens >= 0,
             f"max_new_tokens must be an integer >= 0, got {self.max_new_tokens!r}")
        need(self.max_new_tokens <= 1_000_000, f"max_new_tokens={self.max_new_tokens} is absurdly large")
        need(_is_int(self.min_new_tokens) and 0 <= self.min_new_tokens,
             f"min_new_tokens must be an integer >= 0, got {self.min_new_tokens!r}")
        need(_is_num(self.temperature) and self.temperature >= 0,
             f"temperature must be a number >= 0, got {self.temperature!r}")
        need(_is_num(self.top_p) and 0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p!r}")
        need(_is_int(self.top_k) and self.top_k >= -1, f"top_k must be -1 (off) or >= 1, got {self.top_k!r}")
        need(_is_num(self.min_p) and 0 <= self.min_p <= 1, f"min_p must be in [0, 1], got {self.min_p!r}")
        for name in ("frequency_penalty", "presence_penalty"):
            v = getattr(self, name)
            need(_is_num(v) and -2 <= v <= 2, f"{name} must be in [-2, 2], got {v!r}")
        need(_is_num(self.repetition_penalty) and 0 < self.repetition_penalty <= 2,
             f"repetition_penalty must be in (0, 2], got {self.repetition_penalty!r}")
        need(_is_int(self.n) and 1 <= self.n <= 128, f"n must be an integer in [1, 128], got {self.n!r}")
        need(self.seed is None or (_is_int(self.seed) and SEED_RANGE[0] <= self.seed < SEED_RANGE[1]),
             f"seed must be an integer in [-2**63, 2**64), got {self.seed!r}")
        need(all(isinstance(s, str) and s for s in self.stop), "stop must be a non-empty string or a list of them")
        need(len(self.stop) <= MAX_STOP_STRINGS and all(len(s) <= MAX_STOP_LENGTH for s in self.stop),
             f"stop takes at most {MAX_STOP_STRINGS} strings of at most {MAX_STOP_LENGTH} characters each")
        need(all(_is_int(t) and t >= 0 for t in self.stop_token_ids), "stop_token_ids must be token ids (ints >= 0)")
        need(len(self.stop_token_ids) <= MAX_LOGIT_BIAS, f"stop_token_ids takes at most {MAX_LOGIT_BIAS} ids")
        need(len(self.logit_bias) <= MAX_LOGIT_BIAS and all(t >= 0 and -100 <= b <= 100 for t, b in self.logit_bias.items()),
             f"logit_bias takes at most {MAX_LOGIT_BIAS} token ids (>= 0), each with a bias in [-100, 100]")
        need(_is_int(self.top_logprobs_num) and 0 <= self.top_logprobs_num <= MAX_TOP_LOGPROBS,
             f"top_logprobs_num must be in [0, {MAX_TOP_LOGPROBS}], got {self.top_logprobs_num!r}")
        need(_is_int(self.logprob_start_len) and self.logprob_start_len >= -1,
             f"logprob_start_len must be >= -1, got {self.logprob_start_len!r}")
        need(_is_int(self.loop_guard) and (self.loop_guard == 0 or MIN_WINDOW <= self.loop_guard <= 4096),
             f"loop_guard must be 0 (off) or a window in [{MIN_WINDOW}, 4096] tokens, got {self.loop_guard!r}")
        need(self.loop_guard_action in ACTIONS,
             f"loop_guard_action must be one of {', '.join(ACTIONS)}, got {self.loop_guard_action!r}")
        grammars = [k for k in GRAMMAR_KINDS if getattr(self, k) is not None]
        need(len(grammars) <= 1, f"give at most one of {', '.join(GRAMMAR_KINDS)} (got {', '.join(grammars)})")
        need(self.ebnf is None or isinstance(self.ebnf, str), "ebnf must be a string (a grammar with a root rule)")
        need(self.choices is None or (isinstance(self.choices, list) and self.choices
                                      and all(isinstance(c, str) for c in self.choices)),
             "choices must be a non-empty list of strings")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)
