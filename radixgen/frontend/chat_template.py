"""Role prefixes and suffixes, read once from the tokenizer's own chat template.

A program builds its text piece by piece, so it needs each role's surrounding text rather than a
rendering of whole conversations. We render a sentinel message after the earlier turns and cut the
result around it; the text a program builds is then exactly `apply_chat_template(s.messages())`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_SENTINEL = "\u2063radixgen-sentinel\u2063"
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class RoleTemplate:
    prefix: dict[str, str]
    suffix: dict[str, str]
    default_system: str | None  # what the template puts in a system turn when a chat starts without one

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> "RoleTemplate":
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("the model's tokenizer has no chat template, so roles (system/user/assistant) have "
                             "no text: use a chat model or plain text")

        def render(messages: list[dict[str, str]]) -> str:
            return tokenizer.apply_chat_template(messages, tokenize=False)

        earlier = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
        prefix, suffix = {}, {}
        for i, role in enumerate(ROLES):  # each role rendered after a plausible history
            before = render(earlier[:i]) if i else ""
            full = render(earlier[:i] + [{"role": role, "content": _SENTINEL}])
            if not full.startswith(before) or full.count(_SENTINEL) != 1:
                raise ValueError(f"cannot read the {role} turn's text from this chat template")
            prefix[role], suffix[role] = full[len(before):].split(_SENTINEL)
        head = render([{"role": "user", "content": _SENTINEL}]).split(_SENTINEL)[0]
        return cls(prefix, suffix, _default_system(head, prefix, suffix))


def _default_system(head: str, prefix: dict[str, str], suffix: dict[str, str]) -> str | None:
    """`head` is what precedes a first user message; a template that adds a system turn there
    (SmolLM2's, Qwen's) shows it as prefix["system"] + content + suffix["system"]."""
    block = head[: len(head) - len(prefix["user"])] if head.endswith(prefix["user"]) else ""
    if len(block) > len(prefix["system"]) and block.startswith(prefix["system"]) and block.endswith(suffix["system"]):
        return block[len(prefix["system"]): len(block) - len(suffix["system"])] or None
    return None
