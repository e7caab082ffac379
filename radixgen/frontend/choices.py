"""How `select` picks one choice from the logprobs of each choice's tokens.

SGLang's three methods, with SGLang's call contract so that a method written for SGLang works here.
Each token entry is `[logprob, token_id, text]`; a `None` logprob (no prediction) counts as 0.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

TokenLogprobs = list[list[Any]]  # one choice's tokens: [[logprob, token_id, text], ...]


@dataclass
class ChoicesDecision:
    decision: str
    meta_info: dict[str, Any] = field(default_factory=dict)


class ChoicesSamplingMethod(ABC):
    """Called with keywords: choices, normalized_prompt_logprobs (mean logprob per choice),
    input_token_logprobs / output_token_logprobs (per choice), unconditional_token_logprobs
    (per choice, the choice scored without the prompt; given only when the method asks for it)."""

    requires_unconditional_logprobs: bool = False

    @abstractmethod
    def __call__(self, *, choices: list[str], normalized_prompt_logprobs: list[float],
                 input_token_logprobs: list[TokenLogprobs], output_token_logprobs: list[TokenLogprobs],
                 unconditional_token_logprobs: list[TokenLogprobs] | None = None) -> ChoicesDecision: ...


def _values(tokens: TokenLogprobs) -> list[float]:
    return [t[0] or 0.0 for t in tokens]


def _argmax(xs: list[float]) -> int:
    return max(range(len(xs)), key=xs.__getitem__)  # the first best on ties, as numpy's argmax


class TokenLengthNormalized(ChoicesSamplingMethod):
    """The highest mean logprob per token: long choices are not penalized for their length."""

    def __call__(self, *, choices, normalized_prompt_logprobs, input_token_logprobs, output_token_logprobs,
                 unconditional_token_logprobs=None) -> ChoicesDecision:
        best = _argmax(normalized_prompt_logprobs)
        return ChoicesDecision(choices[best], {"normalized_prompt_logprobs": normalized_prompt_logprobs,
                                               "input_token_logprobs": input_token_logprobs,
                                               "output_token_logprobs": output_token_logprobs})


class GreedyTokenSelection(ChoicesSamplingMethod):
    """Token by token, keep the choices whose token is most likely, as greedy decoding would.
    A choice shorter than the others is padded with its own mean logprob."""

    def __call__(self, *, choices, normalized_prompt_logprobs, input_token_logprobs, output_token_logprobs,
                 unconditional_token_logprobs=None) -> ChoicesDecision:
        rows = [_values(tokens) for tokens in input_token_logprobs]
        width = max(len(r) for r in rows)
        matrix = [r + [sum(r) / len(r)] * (width - len(r)) for r in rows]
        left = list(range(len(rows)))
        for j in range(width):
            top = max(matrix[i][j] for i in left)
            left = [i for i in left if matrix[i][j] == top]
            if len(left) == 1:
                break
        return ChoicesDecision(choices[left[0]], {"normalized_prompt_logprobs": normalized_prompt_logprobs,
                                                  "input_token_logprobs": input_token_logprobs,
                                                  "output_token_logprobs": output_token_logprobs,
                                                  "greedy_logprob_matrix": matrix})


class UnconditionalLikelihoodNormalized(ChoicesSamplingMethod):
    """The highest mean of (logprob given the prompt - logprob without it): favours the choice the
    prompt makes likelier, not the one that is common anyway."""

    requires_unconditional_logprobs = True

    def __call__(self, *, choices, normalized_prompt_logprobs, input_token_logprobs, output_token_logprobs,
                 unconditional_token_logprobs=None) -> ChoicesDecision:
        if unconditional_token_logprobs is None:
            raise ValueError("unconditional_likelihood_normalized needs unconditional_token_logprobs")
        scores = []
        for cond, uncond in zip(input_token_logprobs, unconditional_token_logprobs):
            diffs = [c - u for c, u in zip(_values(cond), _values(uncond))]
            scores.append(sum(diffs) / len(diffs))
        return ChoicesDecision(choices[_argmax(scores)], {
            "normalized_prompt_logprobs": normalized_prompt_logprobs,
            "input_token_logprobs": input_token_logprobs, "output_token_logprobs": output_token_logprobs,
            "unconditional_token_logprobs": unconditional_token_logprobs,
            "normalized_unconditional_prompt_logprobs": scores})


token_length_normalized = TokenLengthNormalized()
greedy_token_selection = GreedyTokenSelection()
unconditional_likelihood_normalized = UnconditionalLikelihoodNormalized()
