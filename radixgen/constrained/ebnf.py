"""EBNF / GBNF grammars -> a LazyGrammar over a CallAutomaton (rules as calls).

The rules (ebnf_parse.py) are checked first: a `root` rule, every referenced rule defined, no
left recursion (a rule that can reach itself before reading any text, which a top-down
pushdown machine cannot run; the message names the cycle and how to write it as repetition).
Then each rule becomes a regex: a rule that takes part in recursion, or whose regex is long, is
*called* (CALL, id bytes: call_automaton.py runs it on a stack), every other rule is copied in
place, where regex-automata merges it with its neighbours into one small DFA. Masks are computed
per state on first use, like JSON schemas' (lazy_grammar.py).

Text never holds U+0000 (the end marker, see automata/index.py) nor U+0001 (CALL): `.` and negated
classes leave them out, and a grammar that writes one as a literal is refused.
"""
from __future__ import annotations

import time

from .automata.call_automaton import CALL, CallAutomaton
from .ebnf_parse import Alt, Cls, Lit, Node, Ref, Rep, Seq, parse_ebnf
from .lazy_grammar import LazyGrammar
from .vocab import TokenVocab

MARKER = b"\x00"
ROOT = "root"
INLINE_MAX = 2_000  # a non-recursive rule whose regex is longer is called rather than copied
CALL_IDS = range(0x02, 0x80)  # id bytes after CALL (single UTF-8 bytes, so regex-automata reads them)
_RESERVED = (0x00, CALL)


def compile_ebnf(text: str, tv: TokenVocab) -> LazyGrammar:
    """A grammar for `text` (GBNF / xgrammar EBNF, start rule `root`); ValueError names what is
    wrong (syntax with line and column, an undefined rule, left recursion, reserved characters)."""
    start = time.perf_counter()
    rules = parse_ebnf(text)
    regex, calls = ebnf_regexes(rules)
    grammar = LazyGrammar(CallAutomaton(regex, MARKER, calls), tv, MARKER, regex)
    grammar.compile_s = time.perf_counter() - start
    grammar.info.update(path="ebnf", rules=len(rules), calls=len(calls))
    return grammar


def ebnf_regexes(rules: dict[str, Node]) -> tuple[str, dict[int, str]]:
    """(root's regex, {call id: regex}) after the checks in the module doc."""
    if ROOT not in rules:
        raise ValueError(f"the grammar has no rule named {ROOT!r} (the start rule); rules: {', '.join(rules)}")
    edges = {name: _refs(node) for name, node in rules.items()}
    for name, refs in edges.items():
        for ref in refs:
            if ref.name not in rules:
                raise ValueError(f"rule {ref.name!r} (used in rule {name!r}, line {ref.line}) is not defined")
    nullable = _nullable(rules)
    _refuse_left_recursion(rules, nullable)
    return _Emitter(rules, _recursive(edges)).root()


def _refs(node: Node) -> list[Ref]:
    if isinstance(node, Ref):
        return [node]
    if isinstance(node, (Seq, Alt)):
        return [r for child in (node.items if isinstance(node, Seq) else node.options) for r in _refs(child)]
    if isinstance(node, Rep):
        return _refs(node.item)
    return []


def _can_be_empty(node: Node, nullable: set[str]) -> bool:
    if isinstance(node, Lit):
        return not node.text
    if isinstance(node, Cls):
        return False
    if isinstance(node, Ref):
        return node.name in nullable
    if isinstance(node, Seq):
        return all(_can_be_empty(n, nullable) for n in node.items)
    if isinstance(node, Alt):
        return any(_can_be_empty(n, nullable) for n in node.options)
    return node.lo == 0 or _can_be_empty(node.item, nullable)


def _nullable(rules: dict[str, Node]) -> set[str]:
    """Rules that can match the empty text (a fixpoint)."""
    out: set[str] = set()
    while True:
        more = {name for name, node in rules.items() if name not in out and _can_be_empty(node, out)}
        if not more:
            return out
        out |= more


def _first_refs(node: Node, nullable: set[str]) -> list[str]:
    """Rules `node` may call before reading any text."""
    if isinstance(node, Ref):
        return [node.name]
    if isinstance(node, Alt):
        return [r for n in node.options for r in _first_refs(n, nullable)]
    if isinstance(node, Rep):
        return _first_refs(node.item, nullable) if node.hi != 0 else []
    if isinstance(node, Seq):
        out: list[str] = []
        for n in node.items:
            out += _first_refs(n, nullable)
            if not _can_be_empty(n, nullable):
                break
        return out
    return []


def _refuse_left_recursion(rules: dict[str, Node], nullable: set[str]) -> None:
    first = {name: _first_refs(node, nullable) for name, node in rules.items()}
    for start in rules:
        path, seen = [start], {start}
        stack = [(start, iter(first[start]))]
        while stack:  # depth-first from `start`, looking for a way back to it
            _, children = stack[-1]
            nxt = next(children, None)
            if nxt is None:
                stack.pop()
                path.pop()
            elif nxt == start:
                cycle = " -> ".join([*path, start])
                raise ValueError(f"rule {start!r} is left-recursive ({cycle} before reading any text), which a "
                                 f"top-down matcher cannot run; write the recursion as repetition, e.g. "
                                 f"`expr ::= term (\"+\" term)*` instead of `expr ::= expr \"+\" term | term`")
            elif nxt not in seen:
                seen.add(nxt)
                path.append(nxt)
                stack.append((nxt, iter(first[nxt])))


def _recursive(edges: dict[str, list[Ref]]) -> set[str]:
    """Rules that can reach themselves through references (Tarjan's strongly connected
    components, iterative: a grammar may chain thousands of rules)."""
    graph = {name: [r.name for r in refs] for name, refs in edges.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: set[str] = set()
    for root in graph:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = len(index)
                stack.append(v)
                on_stack.add(v)
            if i < len(graph[v]):
                work.append((v, i + 1))
                w = graph[v][i]
                if w not in index:
                    work.append((w, 0))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1 or v in graph[v]:
                    out.update(comp)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
    return out


def _char(c: int) -> str:
    return chr(c) if chr(c).isascii() and chr(c).isalnum() else f"\\x{{{c:X}}}"


class _Emitter:
    """Rules -> regex text; called rules get ids (CALL_IDS) and regexes of their own."""

    def __init__(self, rules: dict[str, Node], recursive: set[str]) -> None:
        self.rules, self.recursive = rules, recursive
        self.ids: dict[str, int] = {}
        self.calls: dict[int, str] = {}
        self.memo: dict[str, str] = {}

    def root(self) -> tuple[str, dict[int, str]]:
        return self.rule(ROOT), self.calls

    def rule(self, name: str) -> str:
        out = self.memo.get(name)
        if out is None:
            out = self.memo[name] = self.node(self.rules[name])
        return out

    def call(self, name: str) -> str:
        cid = self.ids.get(name)
        if cid is None:
            if len(self.ids) == len(CALL_IDS):
                raise ValueError(f"the grammar needs more than {len(CALL_IDS)} called rules (recursive or long); "
                                 "merge some rules")
            cid = self.ids[name] = CALL_IDS[len(self.ids)]
            self.calls[cid] = ""  # reserved before its body, which may call it again
            self.calls[cid] = self.rule(name)
        return f"\\x{{{CALL:X}}}\\x{{{cid:X}}}"

    def node(self, node: Node) -> str:
        if isinstance(node, Lit):
            bad = [c for c in node.text if ord(c) in _RESERVED]
            if bad:
                raise ValueError(f"the grammar writes U+{ord(bad[0]):04X}, a control character this runtime "
                                 "reserves (the end marker and rule calls)")
            return "".join(_char(ord(c)) for c in node.text)
        if isinstance(node, Cls):
            return _class(node)
        if isinstance(node, Ref):
            if node.name in self.recursive or node.name in self.ids:
                return self.call(node.name)
            body = self.rule(node.name)
            return f"(?:{body})" if len(body) <= INLINE_MAX else self.call(node.name)
        if isinstance(node, Seq):
            return "".join(self.node(n) for n in node.items)
        if isinstance(node, Alt):
            return "(?:" + "|".join(self.node(n) for n in node.options) + ")"
        top = "" if node.hi is None else str(node.hi)
        count = f"{{{node.lo}}}" if top == str(node.lo) else f"{{{node.lo},{top}}}"
        return f"(?:{self.node(node.item)}){count}"


def _class(node: Cls) -> str:
    """A class over code points, without the reserved ones."""
    if node.negated:
        body = "".join(f"{_char(lo)}-{_char(hi)}" for lo, hi in node.ranges)
        return f"[^{body}\\x{{0}}\\x{{1}}]"
    kept = [(max(lo, 2), hi) for lo, hi in node.ranges if hi >= 2]
    if not kept:
        return "[^\\x{0}-\\x{10FFFF}]"  # matches nothing
    return "[" + "".join(f"{_char(lo)}-{_char(hi)}" for lo, hi in kept) + "]"
