"""A user's regex, written for Python's `re`, re-written in the syntax regex-automata reads.

Users write regexes for Python's `re` (SGLang's frontend, vLLM's guided_regex); outlines-core
compiles Rust regex syntax, which differs in small ways that used to surface as "could not be
compiled": `a{,3}`, a literal `{`, `(?#...)` comments, `\\Z`, octal `\\0`, `\\<` (a word start in
Rust, a `<` in Python), `[[]`, and `\\s`, which in Python also holds \\x1c-\\x1f. So the regex is
parsed with Python's own parser and printed back from its tree: literals other than letters and
digits as `\\x{..}`, every class spelled out, groups non-capturing. What `re` parses compiles here, or is refused naming
the feature a finite automaton cannot match (look-around, backreferences, conditionals, atomic
groups and possessive quantifiers, word boundaries, anchors inside the text).

`exclude`: a byte the printed regex never produces (every class, `.` and negated literal
leaves it out). automata/index.py's end marker must be a control byte the regex cannot write; a regex
that writes every one (`(.|\\n)*`, `[\\s\\S]*`) is compiled without NUL instead, which no model
output needs, rather than refused. The result is masked lazily, like JSON schemas (see
compile_python_regex).
"""
from __future__ import annotations

import re
import warnings
from re import _constants as C  # type: ignore[attr-defined]
from re import _parser  # type: ignore[attr-defined]

from .lazy_grammar import LazyGrammar, compile_lazy
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


_CONTROLS = frozenset(m[0] for m in MARKERS)  # the end marker's candidates: C0 controls and DEL
_SPACE_CONTROLS = {"ascii": frozenset(b"\t\n\x0b\x0c\r"), "unicode": frozenset(b"\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f")}


def _in_class(items: list, c: int, ascii_only: bool) -> bool:
    """Whether control character `c` is one of a class's items (NEGATE aside)."""
    spaces = _SPACE_CONTROLS["ascii" if ascii_only else "unicode"]
    for op, av in items:
        if op is C.LITERAL and av == c or op is C.RANGE and av[0] <= c <= av[1]:
            return True
        if op is C.CATEGORY:
            base = _NEGATED.get(av, av)
            held = c in spaces if base is C.CATEGORY_SPACE else False  # digits and words hold none
            if held != (av in _NEGATED):
                return True
    return False


class RegexRefused(ValueError):
    """A regex `re` accepts that no finite automaton matches; the message names the feature."""


def to_rust_regex(regex: str, exclude: int | None = None) -> str:
    """`regex` (Python syntax, matched against the whole text) in regex-automata's syntax.
    Raises RegexRefused (a ValueError) naming an unsupported feature, ValueError if `re` itself
    rejects the regex."""
    return _print(_parse(regex), exclude).text


def _parse(regex: str) -> "_parser.SubPattern":
    try:
        with warnings.catch_warnings():  # "possible nested set": `[[]` means what it says in `re`
            warnings.simplefilter("ignore", FutureWarning)
            return _parser.parse(regex)
    except re.error as e:
        raise ValueError(f"invalid regex ({e}): {regex[:200]!r}") from None
    except RecursionError:
        raise ValueError("the regex nests groups too deeply") from None


def _print(tree: "_parser.SubPattern", exclude: int | None) -> "_Printer":
    """A printer that has printed `tree` (its `text`, `controls` and `literals`)."""
    printer = _Printer(tree.state.flags, exclude)
    body = printer.seq(tree, True, True)
    printer.text = ("(?i)" if tree.state.flags & re.IGNORECASE else "") + body
    return printer


def _count(lo: int, hi: int) -> str:
    top = "" if hi is C.MAXREPEAT else str(hi)
    short = {(0, ""): "*", (1, ""): "+", (0, "1"): "?"}.get((lo, top))
    return short or (f"{{{lo}}}" if top == str(lo) else f"{{{lo},{top}}}")


def _char(c: int) -> str:
    return chr(c) if chr(c).isascii() and chr(c).isalnum() else f"\\x{{{c:X}}}"


class _Printer:
    def __init__(self, flags: int, exclude: int | None) -> None:
        self.ascii = bool(flags & re.ASCII)
        self.exclude = exclude
        self.dotall = bool(flags & re.DOTALL)
        self.text = ""
        self.controls: set[int] = set()  # control characters a leaf can write (over-estimated)
        self.literals: set[int] = set()  # those written as literals (cannot be excluded)

    def seq(self, sub: "_parser.SubPattern", at_start: bool, at_end: bool) -> str:
        """A sequence; at_start / at_end: whether it begins / ends the whole text (anchors)."""
        items = list(sub)
        zero_width = [op is C.AT for op, _ in items]  # anchors next to an end leave it an end
        out = [self.item(op, av, at_start and all(zero_width[:i]), at_end and all(zero_width[i + 1:]))
               for i, (op, av) in enumerate(items)]
        return "".join(out)

    def item(self, op: object, av: object, at_start: bool, at_end: bool) -> str:
        if op in _REFUSED:
            raise RegexRefused(f"the regex uses {_REFUSED[op]}, which this runtime does not compile "
                               "(it depends on how a backtracking matcher went, not on the text alone)")
        if op is C.LITERAL:
            return self._literal(av)  # type: ignore[arg-type]
        if op is C.NOT_LITERAL:
            self.controls.update(_CONTROLS - {av})
            return self._class(f"^{_char(av)}")  # type: ignore[arg-type]
        if op is C.ANY:
            self.controls.update(_CONTROLS if self.dotall else _CONTROLS - {0x0A})
            return self._class("\\x{0}-\\x{10FFFF}" if self.dotall else "^\\n")
        if op is C.IN:
            return self._in(av)  # type: ignore[arg-type]
        if op is C.BRANCH:
            return "(?:" + "|".join(self.seq(s, at_start, at_end) for s in av[1]) + ")"  # type: ignore[index]
        if op is C.SUBPATTERN:
            return self._group(av, at_start, at_end)  # type: ignore[arg-type]
        if op in (C.MAX_REPEAT, C.MIN_REPEAT):
            lo, hi, body = av  # type: ignore[misc]
            text = self.seq(body, False, False)
            atom = len(body) == 1 and body[0][0] in (C.LITERAL, C.NOT_LITERAL, C.ANY, C.IN)
            return (text if atom else f"(?:{text})") + _count(lo, hi)
        if op is C.AT:
            return self._anchor(av, at_start, at_end)
        raise RegexRefused(f"the regex uses {op}, which this runtime cannot compile")

    def _literal(self, c: int) -> str:
        assert c != self.exclude, "callers exclude only bytes the regex has no literal of"
        if c in _CONTROLS:
            self.controls.add(c)
            self.literals.add(c)
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
        negate = any(op is C.NEGATE for op, _ in items)
        held = {c for c in _CONTROLS if _in_class(items, c, self.ascii)}
        self.controls.update(_CONTROLS - held if negate else held)
        parts = []
        for op, av in items:
            if op is C.NEGATE:
                continue
            if op is C.LITERAL:
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


def compile_python_regex(regex: str, tv: TokenVocab) -> LazyGrammar:
    """A user's regex (Python syntax, whole-text match) as a LazyGrammar on `tv` (masks per state
    on first use, as JSON schemas: indexing SGLang's IPv4 regex against the whole vocabulary took
    5-9 s on the 2-core dev machine, its byte automaton 0.13 s). The end marker is the first
    control byte the regex cannot write; if it can write all of them, the first it has no literal
    of, left out of every class."""
    tree = _parse(regex)
    printed = _print(tree, None)  # raises on unsupported features before anything is built
    marker = next((m for m in MARKERS if m[0] not in printed.controls), None)
    rust = printed.text
    if marker is None:
        marker = next((m for m in MARKERS if m[0] not in printed.literals), None)
        if marker is None:
            raise RegexRefused("the regex writes every ASCII control character as a literal, which leaves no "
                               "byte for the end marker")
        rust = _print(tree, marker[0]).text
    return compile_lazy(rust, tv, marker)
