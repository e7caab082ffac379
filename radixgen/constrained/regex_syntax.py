"""A user's regex, written for Python's `re`, re-written in the syntax regex-automata reads.

Users write regexes for Python's `re` (SGLang's frontend, vLLM's guided_regex); outlines-core
compiles Rust regex syntax, which differs in small ways that used to surface as "could not be
compiled": `a{,3}`, a literal `{`, `(?#...)` comments, `\\Z`, octal `\\0`, `\\<` (a word start in
Rust, a `<` in Python), `[[]`, and `\\s`, which in Python also holds \\x1c-\\x1f. So the regex is
parsed with Python's own parser and printed back from its tree: every literal as `\\x{..}`, every
class spelled out, groups non-capturing. What `re` parses compiles here, or is refused naming
the feature a finite automaton cannot match (look-around, backreferences, conditionals, atomic
groups and possessive quantifiers, word boundaries, anchors inside the text).

`exclude`: a byte the printed regex never produces (every class, `.` and negated literal
leaves it out). grammar.py's end marker must be a control byte the regex cannot write; a regex
that writes every one (`(.|\\n)*`, `[\\s\\S]*`) is compiled without NUL instead, which no model
output needs, rather than refused.
"""
from __future__ import annotations

import re
import warnings
from re import _constants as C  # type: ignore[attr-defined]
from re import _parser  # type: ignore[attr-defined]

from .grammar import CompiledGrammar, compile_regex, marker_is_safe
from .vocab import MARKERS, TokenVocab

_REFUSED = {
    C.ASSERT: "look-around ((?=...), (?!...), (?<=...), (?<!...))",
    C.ASSERT_NOT: "look-around ((?=...), (?!...), (?<=...), (?<!...))",
    C.GROUPREF: "a backreference (\\1, (?P=name))",
    C.GROUPREF_EXISTS: "a conditional group ((?(1)...|...))",
    C.ATOMIC_GROUP: "an atomic group ((?>...))",
    C.POSSESSIVE_REPEAT: "a possessive quantifier (*+, ++, ?+, {m,n}+)",
}
_ASCII_CATEGORIES = {
    C.CATEGORY_DIGIT: "0-9", C.CATEGORY_WORD: "0-9A-Za-z_", C.CATEGORY_SPACE: "\\t\\n\\x0B\\x0C\\r ",
}
_UNICODE_CATEGORIES = {
    C.CATEGORY_DIGIT: "\\d", C.CATEGORY_WORD: "\\w", C.CATEGORY_SPACE: "\\s\\x1C-\\x1F",
}
_NEGATED = {C.CATEGORY_NOT_DIGIT: C.CATEGORY_DIGIT, C.CATEGORY_NOT_WORD: C.CATEGORY_WORD,
            C.CATEGORY_NOT_SPACE: C.CATEGORY_SPACE}


class RegexRefused(ValueError):
    """A regex `re` accepts that no finite automaton matches; the message names the feature."""


def to_rust_regex(regex: str, exclude: int | None = None) -> str:
    """`regex` (Python syntax, matched against the whole text) in regex-automata's syntax.
    Raises RegexRefused (a ValueError) naming an unsupported feature, ValueError if `re` itself
    rejects the regex."""
    try:
        with warnings.catch_warnings():  # "possible nested set": `[[]` means what it says in `re`
            warnings.simplefilter("ignore", FutureWarning)
            tree = _parser.parse(regex)
    except re.error as e:
        raise ValueError(f"invalid regex ({e}): {regex[:200]!r}") from None
    except RecursionError:
        raise ValueError("the regex nests groups too deeply") from None
    body = _Printer(tree.state.flags, exclude).seq(tree, True, True)
    return ("(?i)" if tree.state.flags & re.IGNORECASE else "") + body


def literal_bytes(regex: str) -> set[int]:
    """Code points below 0x20 the regex writes as literals (candidates it cannot exclude)."""
    out: set[int] = set()

    def walk(sub: object) -> None:
        for op, av in sub:  # type: ignore[attr-defined]
            if op is C.LITERAL and av < 0x20:
                out.add(av)
            for a in av if isinstance(av, (list, tuple)) else (av,):
                for b in a if isinstance(a, (list, tuple)) else (a,):
                    if isinstance(b, _parser.SubPattern):
                        walk(b)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        walk(_parser.parse(regex))
    return out


def _char(c: int) -> str:
    return chr(c) if chr(c).isascii() and chr(c).isalnum() else f"\\x{{{c:X}}}"


class _Printer:
    def __init__(self, flags: int, exclude: int | None) -> None:
        self.ascii = bool(flags & re.ASCII)
        self.exclude = exclude
        self.dotall = bool(flags & re.DOTALL)

    def seq(self, sub: "_parser.SubPattern", at_start: bool, at_end: bool) -> str:
        """A sequence; at_start / at_end: whether it begins / ends the whole text (anchors)."""
        items = list(sub)
        out = [self.item(op, av, at_start and i == 0, at_end and i == len(items) - 1)
               for i, (op, av) in enumerate(items)]
        return "".join(out)

    def item(self, op: object, av: object, at_start: bool, at_end: bool) -> str:
        if op in _REFUSED:
            raise RegexRefused(f"the regex uses {_REFUSED[op]}, which this runtime does not compile "
                               "(it depends on how a backtracking matcher went, not on the text alone)")
        if op is C.LITERAL:
            return self._literal(av)  # type: ignore[arg-type]
        if op is C.NOT_LITERAL:
            return self._class(f"^{_char(av)}")  # type: ignore[arg-type]
        if op is C.ANY:
            return self._class("\\x{0}-\\x{10FFFF}" if self.dotall else "^\\n")
        if op is C.IN:
            return self._in(av)  # type: ignore[arg-type]
        if op is C.BRANCH:
            return "(?:" + "|".join(self.seq(s, at_start, at_end) for s in av[1]) + ")"  # type: ignore[index]
        if op is C.SUBPATTERN:
            return self._group(av, at_start, at_end)  # type: ignore[arg-type]
        if op in (C.MAX_REPEAT, C.MIN_REPEAT):
            lo, hi, body = av  # type: ignore[misc]
            top = "" if hi is C.MAXREPEAT else str(hi)
            count = f"{{{lo}}}" if top == str(lo) else f"{{{lo},{top}}}"
            return f"(?:{self.seq(body, False, False)}){count}"
        if op is C.AT:
            return self._anchor(av, at_start, at_end)
        raise RegexRefused(f"the regex uses {op}, which this runtime cannot compile")

    def _literal(self, c: int) -> str:
        assert c != self.exclude, "callers exclude only bytes the regex has no literal of"
        return _char(c)

    def _group(self, av: tuple, at_start: bool, at_end: bool) -> str:
        _, add, remove, body = av
        saved = self.dotall, self.ascii
        self.dotall = (self.dotall or bool(add & re.DOTALL)) and not remove & re.DOTALL
        self.ascii = self.ascii or bool(add & re.ASCII)
        flags = ("i" if add & re.IGNORECASE else "") + ("-i" if remove & re.IGNORECASE else "")
        try:
            return f"(?{flags}:{self.seq(body, at_start, at_end)})"
        finally:
            self.dotall, self.ascii = saved

    def _anchor(self, where: object, at_start: bool, at_end: bool) -> str:
        if where in (C.AT_BOUNDARY, C.AT_NON_BOUNDARY, C.AT_LOC_BOUNDARY, C.AT_LOC_NON_BOUNDARY,
                     C.AT_UNI_BOUNDARY, C.AT_UNI_NON_BOUNDARY):
            raise RegexRefused("the regex uses a word boundary (\\b, \\B), which a finite automaton "
                               "over the text cannot match")
        if where in (C.AT_BEGINNING, C.AT_BEGINNING_STRING, C.AT_BEGINNING_LINE) and at_start:
            return ""
        if where in (C.AT_END, C.AT_END_STRING, C.AT_END_LINE) and at_end:
            return ""
        raise RegexRefused("the regex uses an anchor (^, $, \\A, \\Z) inside the text; the whole "
                           "text is always matched, so anchors may only begin or end the regex")

    def _category(self, cat: object) -> str:
        table = _ASCII_CATEGORIES if self.ascii else _UNICODE_CATEGORIES
        if cat in _NEGATED:
            return f"[^{table[_NEGATED[cat]]}]"
        return table[cat]

    def _in(self, items: list) -> str:
        negate, parts = False, []
        for op, av in items:
            if op is C.NEGATE:
                negate = True
            elif op is C.LITERAL:
                parts.append(_char(av))
            elif op is C.RANGE:
                parts.append(f"{_char(av[0])}-{_char(av[1])}")
            elif op is C.CATEGORY:
                parts.append(self._category(av))
            else:
                raise RegexRefused(f"the regex uses {op} in a character class, which this runtime cannot compile")
        return self._class(("^" if negate else "") + "".join(parts))

    def _class(self, body: str) -> str:
        """`[body]`, without the excluded byte."""
        if self.exclude is None:
            return f"[{body}]"
        return f"[[{body}]&&[^\\x{{{self.exclude:X}}}]]"


def compile_python_regex(regex: str, tv: TokenVocab) -> CompiledGrammar:
    """A user's regex (Python syntax, whole-text match) indexed against `tv`: with an end marker
    it cannot write, else without NUL (or the first control byte it has no literal of)."""
    rust = to_rust_regex(regex)
    marker = next((m for m in MARKERS if marker_is_safe(rust, m)), None)
    if marker is None:
        used = literal_bytes(regex)
        marker = next((m for m in MARKERS if m[0] not in used), None)
        if marker is None:
            raise RegexRefused("the regex writes every ASCII control character as a literal, which leaves no "
                               "byte for the end marker")
        rust = to_rust_regex(regex, exclude=marker[0])
    return compile_regex(rust, tv, marker)
