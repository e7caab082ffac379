"""The error a schema feature that cannot be honoured raises (shared by the converter modules)."""
from __future__ import annotations


class UnsupportedSchemaError(ValueError):
    """A schema feature that cannot be honoured; `keyword` and `pointer` say which and where."""

    def __init__(self, keyword: str, pointer: str, detail: str = "") -> None:
        self.keyword, self.pointer = keyword, pointer or "/"
        super().__init__(f"unsupported JSON schema feature '{keyword}' at '{self.pointer}'"
                         + (f": {detail}" if detail else ""))


class RegexTooLarge(ValueError):
    """The regex for a schema outgrew what can be compiled in time (the compiler narrows the
    schema further when it sees this)."""
