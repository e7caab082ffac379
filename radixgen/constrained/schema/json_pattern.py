"""A schema `pattern` (a regex over the *decoded* string) -> a regex over the JSON string body.

The pattern is parsed with Python's own regex parser (jsonschema validates `pattern` with
Python's `re`, so that is the semantics to honour) and re-emitted character by character: a
character matches in every form JSON may write it (raw, short escape, \\uXXXX), a character
class becomes raw ranges plus the escaped forms of its members. Search semantics: a pattern
not anchored with ^ / $ may be surrounded by any text. Look-around, backreferences, word
boundaries and inline flags have no regular equivalent here and are refused.

Sets are lists of inclusive code point intervals. Where Python's Unicode classes (\\d, \\w,
\\s) are wider than ASCII we emit their ASCII part: a subset, so nothing invalid gets through.
"""
from __future__ import annotations

import re
from re import _constants as C  # type: ignore[attr-defined]
from re import _parser as P  # type: ignore[attr-defined]

import interegular

from .json_values import STRING_CHAR, class_char, encode_char, hex_any_case

Intervals = list[tuple[int, int]]
MAX_CP = 0x10FFFF
_CATEGORIES: dict[object, Intervals] = {
    C.CATEGORY_DIGIT: [(0x30, 0x39)],
    C.CATEGORY_WORD: [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)],
    C.CATEGORY_SPACE: [(0x09, 0x0D), (0x20, 0x20)],
}
_NEGATED = {C.CATEGORY_NOT_DIGIT: C.CATEGORY_DIGIT, C.CATEGORY_NOT_WORD: C.CATEGORY_WORD,
            C.CATEGORY_NOT_SPACE: C.CATEGORY_SPACE}
_PRINTABLE_ASCII: Intervals = [(0x20, 0x7E)]


class PatternError(ValueError):
    """The pattern cannot be expressed (message says why); json_schema wraps it."""


def _normalize(iv: Intervals) -> Intervals:
    out: Intervals = []
    for lo, hi in sorted(iv):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def complement(iv: Intervals) -> Intervals:
    out, nxt = [], 0
    for lo, hi in _normalize(iv):
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= MAX_CP:
        out.append((nxt, MAX_CP))
    return out


def _intersect(a: Intervals, b: Intervals) -> Intervals:
    return _normalize([(max(x, y), min(p, q)) for x, p in a for y, q in b if max(x, y) <= min(p, q)])


def _category(cat: object) -> Intervals:
    if cat in _NEGATED:  # ASCII-only complement: Python's \D etc. exclude non-ASCII digits too
        return _intersect(complement(_CATEGORIES[_NEGATED[cat]]), _PRINTABLE_ASCII)
    if cat not in _CATEGORIES:
        raise PatternError(f"unsupported character category {cat}")
    return _CATEGORIES[cat]


def _hex4_range(lo: int, hi: int) -> str:
    """Regex (any hex case) for 4-digit hex numbers lo..hi."""
    a, b = f"{lo:04x}", f"{hi:04x}"
    if a == b:
        return hex_any_case(a)
    i = next(k for k in range(4) if a[k] != b[k])
    rest = 3 - i
    if a[i + 1:] == "0" * rest and b[i + 1:] == "f" * rest:
        return hex_any_case(a[:i]) + _hex_digit_class(int(a[i], 16), int(b[i], 16)) + \
            (f"[0-9a-fA-F]{{{rest}}}" if rest else "")
    head = int(a[:i + 1], 16) << (4 * rest)
    mid_lo, mid_hi = int(a[i], 16) + 1, int(b[i], 16) - 1
    parts = [_hex4_range(lo, head | ((1 << (4 * rest)) - 1))]
    if mid_lo <= mid_hi:
        parts.append(hex_any_case(a[:i]) + _hex_digit_class(mid_lo, mid_hi) + f"[0-9a-fA-F]{{{rest}}}")
    parts.append(_hex4_range(int(b[:i + 1], 16) << (4 * rest), hi))
    return "(?:" + "|".join(parts) + ")"


def _hex_digit_class(lo: int, hi: int) -> str:
    digits = "".join(f"{d:x}" for d in range(lo, hi + 1))
    return "[" + "".join(sorted(set(digits + digits.upper()))) + "]"


def char_set(iv: Intervals) -> str | None:
    """Regex for one character of the set, in any JSON encoding json.dumps can produce."""
    iv = _normalize(iv)
    alts = []
    raw = _intersect(iv, [(0x20, 0x21), (0x23, 0x5B), (0x5D, MAX_CP)])  # minus " \ controls
    # surrogates are not characters: clamp interval ends out of D800-DFFF
    raw = [(0xE000 if 0xD800 <= lo <= 0xDFFF else lo, 0xD7FF if 0xD800 <= hi <= 0xDFFF else hi)
           for lo, hi in raw]
    raw = [(lo, hi) for lo, hi in raw if lo <= hi]
    if raw:
        alts.append("[" + "".join(_class_cp(lo) if lo == hi else f"{_class_cp(lo)}-{_class_cp(hi)}"
                                  for lo, hi in raw) + "]")
    for lo, hi in _intersect(iv, [(0, 0x1F), (0x22, 0x22), (0x5C, 0x5C)]):
        alts += [encode_char(chr(c)) for c in range(lo, hi + 1)]
    bmp = _intersect(iv, [(0x80, 0xD7FF), (0xE000, 0xFFFF)])
    alts += ["\\\\u" + _hex4_range(lo, hi) for lo, hi in bmp]
    if _intersect(iv, [(0x10000, MAX_CP)]) == [(0x10000, MAX_CP)]:
        alts.append("\\\\u[dD][89abAB][0-9a-fA-F]{2}\\\\u[dD][c-fC-F][0-9a-fA-F]{2}")
    if not alts:
        return None
    return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"


def _class_cp(cp: int) -> str:
    # \UXXXXXXXX reads the same in Rust's regex and Python's re
    return class_char(chr(cp)) if cp < 0x80 else f"\\U{cp:08X}"


def _in_set(items: list) -> Intervals:
    iv: Intervals = []
    negate = False
    for op, av in items:
        if op is C.NEGATE:
            negate = True
        elif op is C.LITERAL:
            iv.append((av, av))
        elif op is C.RANGE:
            iv.append(av)
        elif op is C.CATEGORY:
            iv += _category(av)
        else:
            raise PatternError(f"unsupported class item {op}")
    return complement(iv) if negate else _normalize(iv)


def _emit(sub: P.SubPattern) -> str:
    out = []
    for op, av in sub:
        if op is C.LITERAL:
            out.append(encode_char(chr(av)))
        elif op is C.NOT_LITERAL:
            out.append(_need(char_set(complement([(av, av)]))))
        elif op is C.ANY:  # no DOTALL: anything but a newline
            out.append(_need(char_set(complement([(0x0A, 0x0A)]))))
        elif op is C.IN:
            out.append(_need(char_set(_in_set(av))))
        elif op is C.CATEGORY:
            out.append(_need(char_set(_category(av))))
        elif op is C.BRANCH:
            out.append("(?:" + "|".join(_emit(b) for b in av[1]) + ")")
        elif op is C.SUBPATTERN:
            if av[1] or av[2]:
                raise PatternError("inline flags")
            out.append("(?:" + _emit(av[3]) + ")")
        elif op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT):
            lo, hi, body = av
            top = "" if hi is C.MAXREPEAT else str(hi)
            out.append(f"(?:{_emit(body)}){{{lo},{top}}}")
        elif op is C.ATOMIC_GROUP:
            out.append("(?:" + _emit(av) + ")")
        elif op is C.AT:
            raise PatternError("an anchor (^, $, \\b) inside the pattern")
        else:
            raise PatternError({"ASSERT": "look-ahead/behind", "ASSERT_NOT": "look-ahead/behind",
                                "GROUPREF": "a backreference"}.get(str(op), str(op)))
    return "".join(out)


def _need(rx: str | None) -> str:
    if rx is None:
        raise PatternError("a character class that matches no JSON string character")
    return rx


def _top_alternatives(items: list, limit: int = 64) -> list[list]:
    """Top-level sequences of the pattern, with branches and plain groups spliced in, so that
    every anchor ends up at the very start or end of one alternative (Python's parser factors
    `^a|^b` into `^(?:a|b)`)."""
    for i, (op, av) in enumerate(items):
        if op is C.SUBPATTERN and not av[1] and not av[2]:
            return _top_alternatives(items[:i] + list(av[3]) + items[i + 1:], limit)
        if op is C.BRANCH:
            out: list[list] = []
            for branch in av[1]:
                out += _top_alternatives(items[:i] + list(branch) + items[i + 1:], limit)
                if len(out) > limit:
                    raise PatternError("too many top-level alternatives")
            return out
    return [items]


def _is_start(item: tuple) -> bool:
    return item[0] is C.AT and item[1] in (C.AT_BEGINNING, C.AT_BEGINNING_STRING)


def _is_end(item: tuple) -> bool:
    return item[0] is C.AT and item[1] in (C.AT_END, C.AT_END_STRING)


def pattern_body(pattern: str) -> str:
    """Regex for JSON string bodies (between the quotes) whose decoded text re.search-es
    `pattern`. Raises PatternError if the pattern cannot be expressed."""
    try:
        parsed = P.parse(pattern)
    except re.error as e:
        raise PatternError(f"invalid regex ({e})") from None
    out = []
    for items in _top_alternatives(list(parsed)):
        start = bool(items) and _is_start(items[0])
        end = len(items) > int(start) and _is_end(items[-1])
        body = P.SubPattern(parsed.state, items[int(start): len(items) - int(end)])
        # (Python's $ would also allow one trailing newline: not generated, a safe subset)
        out.append(("" if start else STRING_CHAR + "*") + _emit(body) + ("" if end else STRING_CHAR + "*"))
    return out[0] if len(out) == 1 else "(?:" + "|".join(out) + ")"


def bounded_pattern_body(pattern: str, lo: int, hi: int | None) -> str | None:
    """A pattern together with minLength/maxLength, where expressible: `^X{a,b}$` (also `+`,
    `*`) with X a single character or class becomes X{max(a, lo), min(b, hi)}."""
    try:
        parsed = P.parse(pattern)
    except re.error as e:
        raise PatternError(f"invalid regex ({e})") from None
    items = list(parsed)
    if len(items) == 3 and _is_start(items[0]) and _is_end(items[2]) and \
            items[1][0] in (C.MAX_REPEAT, C.MIN_REPEAT) and len(items[1][1][2]) == 1 and \
            items[1][1][2][0][0] in (C.LITERAL, C.NOT_LITERAL, C.ANY, C.IN, C.CATEGORY):
        a, b, body = items[1][1]
        top = hi if b is C.MAXREPEAT else (b if hi is None else min(b, hi))
        bottom = max(a, lo)
        if top is not None and top < bottom:
            return None
        return f"(?:{_emit(body)}){{{bottom},{'' if top is None else top}}}"
    raise PatternError("pattern combined with minLength/maxLength (only ^X{m,n}$ with one "
                       "character class X can be combined)")


def _search_fsm(pattern: str) -> "interegular.FSM | None":
    """interegular automaton of the strings `pattern` re.search-es, None if it cannot say."""
    body, start = (pattern[1:], True) if pattern.startswith("^") else (pattern, False)
    end = body.endswith("$") and not body.endswith("\\$")
    body = body[:-1] if end else body
    depth, escaped, in_class = 0, False, False
    for ch in body:  # anchors elsewhere, or a top-level | beside an anchor: give up
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
        elif ch in "()":
            depth += 1 if ch == "(" else -1
        elif ch == "$" or (ch == "^") or (ch == "|" and depth == 0 and (start or end)):
            return None
    anything = r"[\s\S]*"  # `.` would leave out newlines
    wrapped = ("" if start else anything) + f"(?:{body})" + ("" if end else anything)
    try:
        return interegular.parse_pattern(wrapped).to_fsm()
    except (interegular.patterns.Unsupported, interegular.patterns.InvalidSyntax):
        return None


def patterns_disjoint(a: str, b: str) -> bool:
    """True when no string matches both patterns (proved on interegular automata)."""
    fa, fb = _search_fsm(a), _search_fsm(b)
    return fa is not None and fb is not None and (fa & fb).empty()
