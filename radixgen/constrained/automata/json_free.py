"""Free-form JSON values as a pushdown machine over bytes, for slot_automaton.py.

A value the schema leaves open (`{}`, an untyped additional property, array items without a
schema) is any JSON value, nested as deep as the writer likes. A regex can only unroll that
to a fixed depth, and its text grows four-fold a level (an array and an object each need
their element twice), so deep free-form values were what made large schemas narrow. Here they
are a stack machine instead: the converter writes one SLOT byte where such a value goes, and
slot_automaton.py steps this machine while the text is inside it.

A machine state is (stack, lex): stack a str of the open containers ("[" or "{", outermost
first), lex the lexical state below. The language is exactly the converter's `any_value`
without the depth bound: the same strings (FREE_CHAR: printable UTF-8, short escapes, \\uXXXX),
numbers (json_numbers.number_regex, with the same digit limits), literals, and whitespace only after `,` and `:`, where it follows
the compiler's whitespace pattern (its own small automaton, stepped alongside).
"""
from __future__ import annotations

from typing import Callable, Union

SLOT = 0x01    # byte the converter writes for a free-form value (never JSON text)
UNIQUE = 0x02  # byte the converter writes before the `[` of a uniqueItems array
# bytes for recursive $refs (json_refs.py): control bytes JSON text never holds, but not the
# marker (0x00) and not tab, newline or carriage return, which a whitespace pattern may allow
CALL_BYTES = (*range(0x03, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20))
SLOT_REGEX, UNIQUE_REGEX = f"\\x{SLOT:02x}", f"\\x{UNIQUE:02x}"  # the same, in regex text
MAX_DEPTH = 64  # containers open at once inside one free-form value (a bound on runaway nesting)

# lex states, each a tuple (hashable, cheap to compare):
VALUE = ("v",)          # a value must start
VALUE_OR_CLOSE = ("v]",)  # just after "[": a value or "]"
KEY = ("k",)            # a key must start (after "," in an object)
KEY_OR_CLOSE = ("k}",)  # just after "{": a key or "}"
COLON = ("c",)          # after a key: ":"
AFTER = ("a",)          # after a value inside a container: "," or the closer
# ("w", then, ws_state): whitespace after "," or ":", then `then` (VALUE or KEY)
# ("s", is_key, need):   inside a string; need = (lo, hi, more) while a UTF-8 character is
#                        unfinished (next byte in [lo, hi], then `more` continuation bytes)
# ("e", is_key):         after a backslash;  ("x", is_key, n): n hex digits of \\u left
# ("n", part, count):    inside a number (part: "-" "0" "i" "." "f" "e" "s" "x", see _NUMBER;
#                        count: digits read in the integer, fraction or exponent part so far)
# ("l", rest):           inside true / false / null, `rest` bytes still to come

Lex = tuple
State = tuple[str, Lex]  # (stack, lex)
# What a byte does to a machine state: stay inside (a new state), finish the value with this
# byte (DONE), or finish it before this byte, which the text after the value must then read (PASS).
DONE = "done"
PASS = "pass"
Outcome = Union[State, str]

_HEX = frozenset(b"0123456789abcdefABCDEF")
_DIGITS = frozenset(b"0123456789")
_ESCAPES = frozenset(b'"\\/bfnrt')
_LITERALS = {ord("t"): b"rue", ord("f"): b"alse", ord("n"): b"ull"}
# number parts: byte class -> next part; a part in _NUMBER_ENDS may end the number
_NUMBER = {
    "-": {"0": "0", "d": "i"},
    "0": {".": ".", "e": "e"},
    "i": {"0": "i", "d": "i", ".": ".", "e": "e"},
    ".": {"0": "f", "d": "f"},
    "f": {"0": "f", "d": "f", "e": "e"},
    "e": {"+": "s", "0": "x", "d": "x"},
    "s": {"0": "x", "d": "x"},
    "x": {"0": "x", "d": "x"},
}
_NUMBER_ENDS = frozenset("0ifx")
_COUNTED = {"i": 0, "f": 1, "x": 2}  # digit part -> its index in FreeJson's limits


def _number_class(b: int) -> str:
    if b == 0x30:
        return "0"
    if b in _DIGITS:
        return "d"
    return {0x2E: ".", 0x65: "e", 0x45: "e", 0x2B: "+", 0x2D: "+"}.get(b, "")


def _utf8_lead(b: int) -> tuple[int, int, int] | None:
    """(lo, hi, more) for the continuation bytes after lead byte `b` (valid UTF-8 only: no
    overlongs, no surrogates, nothing past U+10FFFF); None if `b` cannot lead."""
    if 0xC2 <= b <= 0xDF:
        return (0x80, 0xBF, 0)
    if b == 0xE0:
        return (0xA0, 0xBF, 1)
    if b == 0xED:
        return (0x80, 0x9F, 1)
    if 0xE1 <= b <= 0xEF:
        return (0x80, 0xBF, 1)
    if b == 0xF0:
        return (0x90, 0xBF, 2)
    if 0xF1 <= b <= 0xF3:
        return (0x80, 0xBF, 2)
    if b == 0xF4:
        return (0x80, 0x8F, 2)
    return None


class FreeJson:
    """Steps of the free-form value machine; `ws_step(q, b)` / `ws_accepts(q)` / `ws_start`
    are the whitespace pattern's automaton (a ByteAutomaton over the compiler's pattern)."""

    def __init__(self, ws_start: int, ws_step: Callable[[int, int], int | None],
                 ws_accepts: Callable[[int], bool],
                 limits: tuple[int | None, int | None, int | None] = (None, None, None)) -> None:
        self.ws_start, self._ws_step, self._ws_accepts = ws_start, ws_step, ws_accepts
        # most digits in a number's integer, fraction and exponent parts (JsonOptions.int_digits,
        # frac_digits, exp_digits; None: no limit, exponent 0: none), so a model cannot loop there
        self._limits = limits

    def start(self, b: int) -> list[Outcome]:
        """Outcomes of the first byte of a free-form value."""
        return self._value("", b)

    def step(self, state: State, b: int) -> list[Outcome]:
        """Outcomes of byte `b` in `state` (empty: the byte is not allowed)."""
        stack, lex = state
        kind = lex[0]
        if kind == "s":
            return self._string(stack, lex, b)
        if kind in ("e", "x"):
            return self._escape(stack, lex, b)
        if kind == "n":
            nxt = self._number_step(lex, b)
            if nxt is not None:
                return [(stack, nxt)]
            return self._ended(stack, b) if lex[1] in _NUMBER_ENDS else []
        if kind == "l":
            if b != lex[1][0]:
                return []
            return [(stack, ("l", lex[1][1:]))] if len(lex[1]) > 1 else [self._finished(stack)]
        if kind == "w":
            out: list[Outcome] = []
            nxt = self._ws_step(lex[2], b)
            if nxt is not None:
                out.append((stack, ("w", lex[1], nxt)))
            if self._ws_accepts(lex[2]):
                out += self.step((stack, lex[1]), b)
            return out
        if lex == VALUE:
            return self._value(stack, b)
        if lex == VALUE_OR_CLOSE:
            return self._close(stack, b) if b == 0x5D else self._value(stack, b)
        if lex in (KEY, KEY_OR_CLOSE):
            if b == 0x22:
                return [(stack, ("s", True, None))]
            return self._close(stack, b) if lex == KEY_OR_CLOSE and b == 0x7D else []
        if lex == COLON:
            return [(stack, ("w", VALUE, self.ws_start))] if b == 0x3A else []
        if lex == AFTER:
            if b == 0x2C:
                return [(stack, ("w", VALUE if stack[-1] == "[" else KEY, self.ws_start))]
            return self._close(stack, b)
        raise ValueError(f"unknown lexical state {lex!r}")

    def accepts_here(self, state: State) -> bool:
        """Whether the value may end before the next byte with nothing left open (a number)."""
        stack, lex = state
        return not stack and lex[0] == "n" and lex[1] in _NUMBER_ENDS

    # ---- pieces --------------------------------------------------------------------------

    def _value(self, stack: str, b: int) -> list[Outcome]:
        if b == 0x22:
            return [(stack, ("s", False, None))]
        if b == 0x2D:
            return [(stack, ("n", "-", 0))]
        if b in _DIGITS:
            return [(stack, ("n", "0" if b == 0x30 else "i", 1))]
        if b in _LITERALS:
            return [(stack, ("l", _LITERALS[b]))]
        if b in (0x5B, 0x7B) and len(stack) < MAX_DEPTH:
            return [(stack + chr(b), VALUE_OR_CLOSE if b == 0x5B else KEY_OR_CLOSE)]
        return []

    def _number_step(self, lex: Lex, b: int) -> Lex | None:
        part = _NUMBER[lex[1]].get(_number_class(b))
        if part is None or (part == "e" and self._limits[2] == 0):
            return None
        count = lex[2] + 1 if part == lex[1] else 1
        limit = self._limits[_COUNTED[part]] if part in _COUNTED else None
        return None if limit is not None and count > limit else ("n", part, count)

    def _finished(self, stack: str) -> Outcome:
        """A value just ended with the byte read: the container goes on, or the slot is done."""
        return (stack, AFTER) if stack else DONE

    def _ended(self, stack: str, b: int) -> list[Outcome]:
        """A number ended before byte `b`: the container reads `b`, or the text after the slot."""
        return self.step((stack, AFTER), b) if stack else [PASS]

    def _close(self, stack: str, b: int) -> list[Outcome]:
        if stack and b == (0x5D if stack[-1] == "[" else 0x7D):
            return [self._finished(stack[:-1])]
        return []

    def _string(self, stack: str, lex: Lex, b: int) -> list[Outcome]:
        is_key, need = lex[1], lex[2]
        if need is not None:
            lo, hi, more = need
            if not lo <= b <= hi:
                return []
            return [(stack, ("s", is_key, (0x80, 0xBF, more - 1) if more else None))]
        if b == 0x22:
            return [(stack, COLON)] if is_key else [self._finished(stack)]
        if b == 0x5C:
            return [(stack, ("e", is_key))]
        if 0x20 <= b < 0x80:
            return [(stack, lex)]
        lead = _utf8_lead(b)
        return [] if lead is None else [(stack, ("s", is_key, lead))]

    def _escape(self, stack: str, lex: Lex, b: int) -> list[Outcome]:
        is_key = lex[1]
        if lex[0] == "e":
            if b in _ESCAPES:
                return [(stack, ("s", is_key, None))]
            return [(stack, ("x", is_key, 4))] if b == 0x75 else []
        if b not in _HEX:
            return []
        return [(stack, ("x", is_key, lex[2] - 1))] if lex[2] > 1 else [(stack, ("s", is_key, None))]
