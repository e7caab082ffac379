"""ProgramStateGroup: the children of `s.fork(n)`, added to together and joined back."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    from .interpreter import ProgramState


class ProgramStateGroup:
    """The children of `s.fork(n)`: index them, add to all at once, then `join()`."""

    def __init__(self, states: list[ProgramState], parent: ProgramState):
        self.states, self.parent = states, parent

    def __getitem__(self, i: int) -> ProgramState:
        return self.states[i]

    def __setitem__(self, i: int, state: ProgramState) -> None:
        """`forks[i] += expr` adds in place, then Python stores the result back: the same state."""
        if state is not self.states[i]:
            raise TypeError("a fork cannot be replaced: add to it with forks[i] += ...")

    def __len__(self) -> int:
        return len(self.states)

    def __iter__(self) -> Iterator[ProgramState]:
        return iter(self.states)

    def __iadd__(self, other: Any) -> "ProgramStateGroup":
        """An expression for all; a list or a function of the index for each."""
        for i, state in enumerate(self.states):
            state += other(i) if callable(other) else other[i] if isinstance(other, (list, tuple)) else other
        return self

    def join(self, mode: str = "gather_variable") -> None:
        """gather_variable: each variable the children set becomes a list in the parent.
        concate_and_append: the children's new text is appended to the parent's."""
        if mode not in ("gather_variable", "concate_and_append"):
            raise ValueError(f"join mode must be 'gather_variable' or 'concate_and_append', got {mode!r}")
        for child in self.states:
            child.sync()
        failed = [c._error for c in self.states if c._error is not None and c._error is not self.parent._error]
        if failed:
            self.parent._fail(failed[0])
        if mode == "gather_variable":
            known = set(self.parent._vars)
            for child in self.states:
                for name, value in child._vars.items():
                    if name not in known:
                        self.parent._vars.setdefault(name, []).append(value)
                        self.parent._meta.setdefault(name, []).append(child._meta.get(name))
        else:
            self.parent += "".join(c._text[c._fork_start:] for c in self.states)
        for child in self.states:
            child._finish()
