"""Incremental detokenization: new text per token without re-decoding the whole output each step.

Byte-level BPE may need several tokens for one character; text is released only once it no longer
ends in a replacement character. Keeps two offsets into the ids (vLLM / SGLang's scheme).
"""
from __future__ import annotations

from typing import Any


class IncrementalDetokenizer:
    def __init__(self, tokenizer: Any, skip_special_tokens: bool = True,
                 spaces_between_special_tokens: bool = True):
        self.tokenizer = tokenizer
        self.kwargs = dict(skip_special_tokens=skip_special_tokens,
                           spaces_between_special_tokens=spaces_between_special_tokens)
        self.prefix_offset = 0   # ids[prefix_offset:read_offset] is already-emitted context
        self.read_offset = 0

    def step(self, ids: list[int]) -> str:
        """Text added by the tokens of `ids` past the last call (empty while a character is split)."""
        decode = lambda a, b: self.tokenizer.decode(ids[a:b], **self.kwargs)  # noqa: E731
        prefix = decode(self.prefix_offset, self.read_offset)
        full = decode(self.prefix_offset, len(ids))
        if len(full) > len(prefix) and not full.endswith("\ufffd"):
            self.prefix_offset, self.read_offset = self.read_offset, len(ids)
            return full[len(prefix):]
        return ""
