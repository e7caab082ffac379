"""Regexes as outlines-core byte-level indexes: the plumbing every automaton and grammar builds on
(build_index, the one-byte-a-token BYTE_VOCAB, strip_anchors, end markers).

The outlines-core 0.2.14 defect, and the way around it
------------------------------------------------------
`Index` walks every token's bytes through regex-automata's DFA and keeps a transition only if the
state it lands in is not a "match state" or is a full match at end of input. regex-automata
reports matches one byte late: a state is a match state when the text *before its last byte*
matched. So a token whose last byte leaves an accepting prefix for a non-accepting one is
dropped: in `a(bc)?` after "a", the token "b" goes (the DFA sees "a" matched) and only "bc"
survives; `12.5` dies at ".".

We never let the regex match early: the index is built for `M(?:R)M`, M being one ASCII
control byte that R can never produce. Then no proper prefix of any text the model can write
is a match, so no transition is dropped. Acceptance of R is read back through a sentinel token
whose bytes are M: a state accepts R iff the sentinel leads from it to a final state of the
index. Real tokens holding the byte M are removed from every mask (R cannot produce M, so none
is valid). The leading M is there for speed: regex-automata also builds the unanchored
(search) half of the DFA, and with the match deferred to the end a counted repetition like
`[0-9]{0,18}` would make it track every start position (2 s for one bounded integer); after a
leading M no new start position can open, so that half stays as small as R's own DFA.

Which M: JSON-schema regexes never produce a raw control byte (JSON forbids them unescaped) and
choices are plain strings, so M is known; a user regex (regex_syntax.py) takes the first control
byte its parse tree cannot write, or, if it can write them all, is compiled without NUL; EBNF
grammars (ebnf.py) never write NUL. `compile_regex` with no marker checks candidates on a cheap
byte-level index.
"""
from __future__ import annotations

import re
from typing import Iterator

from outlines_core import Index, Vocabulary


def strip_anchors(regex: str) -> str:
    """Drop a leading ^ and a trailing unescaped $: matching is always whole-text."""
    if regex.startswith("^"):
        regex = regex[1:]
    if regex.endswith("$"):
        body = regex[:-1]
        if (len(body) - len(body.rstrip("\\"))) % 2 == 0:
            regex = body
    return regex


def _ops(sub: "re._parser.SubPattern") -> Iterator[str]:  # type: ignore[name-defined]
    """Names of every node of a parsed Python regex, recursively."""
    for op, av in sub:
        yield str(op) if str(op) != "AT" else str(av)
        for a in av if isinstance(av, (list, tuple)) else (av,):
            for b in a if isinstance(a, (list, tuple)) else (a,):
                if isinstance(b, re._parser.SubPattern):  # type: ignore[attr-defined]
                    yield from _ops(b)


def _regex_problem(regex: str) -> str:
    """Best explanation of why regex-automata refused `regex` (its own message says nothing)."""
    try:
        ops = set(_ops(re._parser.parse(regex)))  # type: ignore[attr-defined]
    except re.error as e:
        return f"invalid regex ({e})"
    except RecursionError:
        return "the regex nests groups too deeply (regex-syntax allows ~80 levels)"
    for names, what in ((("ASSERT", "ASSERT_NOT"), "look-around"), (("GROUPREF",), "a backreference"),
                        (("AT_BOUNDARY", "AT_NON_BOUNDARY"), "a word boundary")):
        if ops.intersection(names):
            return f"the regex uses {what}, which a finite automaton cannot match"
    return "the regex could not be compiled to a DFA (unsupported syntax or too large)"


def build_index(regex: str, vocab: Vocabulary, marker: bytes) -> Index:
    """Index of `M(?:regex)M`; regex-automata's errors become messages naming the problem."""
    m = f"\\x{marker[0]:02x}"
    marked = f"{m}(?:{regex}){m}"
    try:
        return Index(marked, vocab)
    except ValueError as e:
        if "Failed to build DFA" in str(e):
            raise ValueError(f"{_regex_problem(regex)}: {regex[:200]!r}") from None
        if vocab is BYTE_VOCAB and "no transitions" in str(e):  # every byte is a token: nothing fits
            raise ValueError(f"the regex admits no text (an empty class such as [^\\s\\S]?): {regex[:200]!r}") from None
        raise ValueError(f"cannot index regex {regex[:200]!r}: {e}") from None


# Every single byte as its own token: an index over it has every DFA state reachable by text,
# with at most 256 transitions each, so inspecting all of them is cheap (the real vocabulary's
# index has tens of thousands per state).
_BYTE_EOS = 256
BYTE_VOCAB = Vocabulary(_BYTE_EOS, {bytes([b]): [b] for b in range(256)})


def marker_is_safe(regex: str, marker: bytes) -> bool:
    """True if `regex` can never produce the byte `marker` (checked on the byte-level index)."""
    index = build_index(regex, BYTE_VOCAB, marker)
    transitions = index.get_transitions()
    transitions.pop(index.get_initial_state())  # the leading marker is read there by design
    for nexts in transitions.values():
        nxt = nexts.get(marker[0])
        # M read as the regex's own text (non-final), or text continuing after accept + M
        if nxt is not None and (not index.is_final_state(nxt) or len(transitions.get(nxt, {})) > 1):
            return False
    return True
