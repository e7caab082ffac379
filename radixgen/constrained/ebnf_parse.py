"""EBNF / GBNF text -> rules: {name: Node}, the syntax llama.cpp's GBNF and xgrammar (SGLang) read.

    root  ::= "(" expr ")" | [0-9]+   # a comment
    expr  ::= term (("+" | "-") term)*
    name  ::= [a-zA-Z_] [a-zA-Z0-9_]{0,31}

Rules are `name ::= alternatives`; `|`, grouping, `*` `+` `?`, `{m}` `{m,}` `{m,n}` `{,n}`,
string literals in double (or single) quotes, character classes `[a-z]` / `[^"\\\\]` over code
points, `.` for any character, rule names, `#` comments. Escapes: \\n \\r \\t \\\\ \\" \\' \\[ \\]
\\- \\/ \\xHH \\uHHHH \\UHHHHHHHH. Line breaks are white space anywhere (a rule ends where the next
`name ::=` begins), so both GBNF's one-rule-a-line and xgrammar's free layout parse. Every error
names its line and column.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

MAX_COUNT = 10_000  # the largest {m,n} a grammar may use (each copy is expanded by regex-automata)


@dataclass(frozen=True)
class Lit:
    text: str


@dataclass(frozen=True)
class Cls:
    ranges: tuple[tuple[int, int], ...]  # inclusive code point ranges
    negated: bool


@dataclass(frozen=True)
class Ref:
    name: str
    line: int = field(compare=False)  # where it is used, for messages


@dataclass(frozen=True)
class Seq:
    items: tuple["Node", ...]


@dataclass(frozen=True)
class Alt:
    options: tuple["Node", ...]


@dataclass(frozen=True)
class Rep:
    item: "Node"
    lo: int
    hi: int | None  # None: no upper bound


Node = Union[Lit, Cls, Ref, Seq, Alt, Rep]
ANY = Cls((), True)  # `.`
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"', "'": "'", "[": "[", "]": "]",
            "-": "-", "/": "/", "^": "^", "0": "\0"}
_HEX_LEN = {"x": 2, "u": 4, "U": 8}
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


class EbnfSyntaxError(ValueError):
    """A grammar that does not parse; the message says where and what was expected."""


def parse_ebnf(text: str) -> dict[str, Node]:
    """The rules of `text`, in order; raises EbnfSyntaxError (a ValueError) naming the place."""
    return _Parser(text).grammar()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text, self.pos = text, 0

    def fail(self, what: str, at: int | None = None) -> EbnfSyntaxError:
        at = self.pos if at is None else at
        line = self.text.count("\n", 0, at) + 1
        col = at - (self.text.rfind("\n", 0, at) + 1) + 1
        near = self.text[at:at + 20].split("\n")[0]
        return EbnfSyntaxError(f"EBNF syntax error at line {line}, column {col}: {what}"
                               + (f" (near {near!r})" if near else " (at the end)"))

    def line(self) -> int:
        return self.text.count("\n", 0, self.pos) + 1

    # ---- lexing --------------------------------------------------------------------------

    def skip(self) -> None:
        """White space (line breaks included) and # comments."""
        text = self.text
        while self.pos < len(text):
            c = text[self.pos]
            if c in " \t\r\n":
                self.pos += 1
            elif c == "#":
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end
            else:
                break

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def name(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _NAME_CHARS:
            self.pos += 1
        return self.text[start:self.pos]

    def at_rule_start(self) -> bool:
        """Whether a `name ::=` begins here (it ends the rule before it)."""
        save = self.pos
        found = bool(self.name())
        self.skip()
        found = found and self.text.startswith("::=", self.pos)
        self.pos = save
        return found

    # ---- grammar -------------------------------------------------------------------------

    def grammar(self) -> dict[str, Node]:
        rules: dict[str, Node] = {}
        self.skip()
        while self.pos < len(self.text):
            start = self.pos
            name = self.name()
            if not name:
                raise self.fail("expected a rule name")
            self.skip()
            if not self.text.startswith("::=", self.pos):
                raise self.fail(f"expected '::=' after the rule name {name!r}")
            if name in rules:
                raise self.fail(f"rule {name!r} is defined twice", start)
            self.pos += 3
            self.skip()
            rules[name] = self.alternatives(nested=False)
            self.skip()
        if not rules:
            raise EbnfSyntaxError("the grammar has no rules (expected `root ::= ...`)")
        return rules

    def alternatives(self, nested: bool) -> Node:
        options = [self.sequence(nested)]
        while self.peek() == "|":
            self.pos += 1
            self.skip()
            options.append(self.sequence(nested))
        return options[0] if len(options) == 1 else Alt(tuple(options))

    def sequence(self, nested: bool) -> Node:
        items: list[Node] = []
        while True:
            self.skip()
            c = self.peek()
            if c in ("", "|") or (c == ")" and nested) or (not nested and self.at_rule_start()):
                break
            if c == ")":
                raise self.fail("unbalanced ')'")
            items.append(self.postfix(self.primary()))
        return items[0] if len(items) == 1 else Seq(tuple(items))

    def primary(self) -> Node:
        c, start = self.peek(), self.pos
        if c in "\"'":
            return Lit(self.string(c))
        if c == "[":
            return self.char_class()
        if c == ".":
            self.pos += 1
            return ANY
        if c == "(":
            self.pos += 1
            self.skip()
            if self.peek() == "=":
                raise self.fail("lookahead assertions `(= ...)` are not supported", start)
            inner = self.alternatives(nested=True)
            self.skip()
            if self.peek() != ")":
                raise self.fail("expected ')' to close the group opened", start)
            self.pos += 1
            return inner
        name = self.name()
        if name:
            return Ref(name, self.line())
        if c in "<!":
            raise self.fail("token references (<[id]>, <token>, !<...>) are not supported; write the text")
        raise self.fail(f"unexpected character {c!r}; expected a string, a [class], a rule name or '('")

    def postfix(self, node: Node) -> Node:
        while True:
            c = self.peek()
            if c in "*+?" and c:
                self.pos += 1
                node = Rep(node, 1 if c == "+" else 0, 1 if c == "?" else None)
            elif c == "{":
                lo, hi = self.count()
                node = Rep(node, lo, hi)
            else:
                return node

    def count(self) -> tuple[int, int | None]:
        start = self.pos
        end = self.text.find("}", start)
        body = self.text[start + 1:end].replace(" ", "") if end > 0 else ""
        parts = body.split(",")
        if end < 0 or len(parts) > 2 or not all(p.isdigit() or p == "" for p in parts) or parts == [""]:
            raise self.fail("expected a repetition count {m}, {m,}, {m,n} or {,n}")
        lo = int(parts[0] or 0)
        hi = lo if len(parts) == 1 else (int(parts[1]) if parts[1] else None)
        if hi is not None and hi < lo:
            raise self.fail(f"repetition {{{body}}} has its maximum below its minimum", start)
        if max(lo, hi or 0) > MAX_COUNT:
            raise self.fail(f"repetition {{{body}}} is over the limit of {MAX_COUNT:,}", start)
        self.pos = end + 1
        return lo, hi

    def char(self, in_class: bool) -> str:
        """One character of a string or class, escapes decoded."""
        text, start = self.text, self.pos
        if self.pos >= len(text):
            raise self.fail("unterminated " + ("character class" if in_class else "string"))
        c = text[self.pos]
        self.pos += 1
        if c != "\\":
            return c
        e = text[self.pos:self.pos + 1]
        self.pos += 1
        if e in _HEX_LEN:
            digits = text[self.pos:self.pos + _HEX_LEN[e]]
            if len(digits) != _HEX_LEN[e] or any(d not in "0123456789abcdefABCDEF" for d in digits):
                raise self.fail(f"\\{e} needs {_HEX_LEN[e]} hex digits", start)
            self.pos += len(digits)
            value = int(digits, 16)
            if value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
                raise self.fail(f"\\{e}{digits} is not a Unicode scalar value", start)
            return chr(value)
        if e in _ESCAPES:
            return _ESCAPES[e]
        raise self.fail(f"unknown escape '\\{e}'", start)

    def string(self, quote: str) -> str:
        start = self.pos
        self.pos += 1
        out = []
        while True:
            if self.pos >= len(self.text) or self.text[self.pos] == "\n":
                raise self.fail("unterminated string", start)
            if self.text[self.pos] == quote:
                self.pos += 1
                return "".join(out)
            out.append(self.char(False))

    def char_class(self) -> Cls:
        start = self.pos
        self.pos += 1
        negated = self.peek() == "^"
        self.pos += negated
        ranges: list[tuple[int, int]] = []
        while True:
            if self.pos >= len(self.text):
                raise self.fail("unterminated character class", start)
            if self.text[self.pos] == "]":
                self.pos += 1
                return Cls(tuple(ranges), negated)
            lo = ord(self.char(True))
            hi = lo
            if self.peek() == "-" and self.text[self.pos + 1:self.pos + 2] not in ("]", ""):
                self.pos += 1
                hi = ord(self.char(True))
                if hi < lo:
                    raise self.fail(f"range {chr(lo)!r}-{chr(hi)!r} is out of order", start)
            ranges.append((lo, hi))
