"""Finishing defaults for JSON grammars that the matcher applies (JsonOptions.close_strings_at,
close_arrays_at, close_depth_at): once a string's content has run to `close_strings_at` bytes and
its last bytes repeat (one unit of up to LOOP_UNIT bytes, LOOP_REPEATS times over and at least
LOOP_MIN bytes: `0000…`, `transaction-transaction-…`, a sentence again), only tokens that close it
(starting with `"`) are allowed, so a long string that does not loop is never cut; once an array holds `close_arrays_at`
items and may end, only tokens that end it (starting with `]`); inside `close_depth_at`
containers, only tokens that open no deeper one. Each applies only where the grammar allows such
a token right there.

Why: a small model that starts repeating itself inside a string ("0000…", the same sentence
again), an array (the same item again) or ever deeper free-form objects under a grammar that leaves them unbounded writes to
max_new_tokens; closed, it goes on to the next key or bracket and usually finishes. What it keeps
valid: the restriction only removes tokens, and only when some grammar-allowed token remains (a
string under minLength, a pattern that cannot end there, an array under minItems are left alone),
so every text is still one the grammar accepts.

Why at the matcher, not in the regex: counting in a DFA copies the string's (or the item's)
automaton once per position (JsonOptions.string_cap / items_cap), which made the dev schemas
compile 8x slower or miss the time limit; here it is a lexical scan per accepted token (the JSON
text a grammar writes is well-formed, so quotes, backslashes and brackets say where one is).
"""
from __future__ import annotations

from typing import NamedTuple

QUOTE, BACKSLASH, COMMA = 0x22, 0x5C, 0x2C
OPEN_ARRAY, OPEN_OBJECT, CLOSERS = 0x5B, 0x7B, (0x5D, 0x7D)
OBJECT = -1  # a frame that is an object; an array's frame is its count of commas
LOOP_UNIT, LOOP_REPEATS, LOOP_MIN = 64, 3, 32  # what counts as a string repeating itself (see repeating)
TAIL = LOOP_UNIT * LOOP_REPEATS                # the string's last content bytes a scan keeps


class JsonScan(NamedTuple):
    """Lexical state after some text: inside a string, after a backslash there, content bytes
    of the string, the open containers (innermost last), and the string's last TAIL bytes."""
    in_string: bool = False
    escaped: bool = False
    length: int = 0
    frames: tuple[int, ...] = ()
    tail: bytes = b""


def scan(state: JsonScan, piece: bytes) -> JsonScan:
    """`state` advanced over `piece`."""
    in_string, escaped, length, frames, tail = state
    start = 0  # where this piece's part of the open string begins
    for i, b in enumerate(piece):
        if in_string:
            if escaped:
                escaped, length = False, length + 1
            elif b == QUOTE:
                in_string = False
            else:
                escaped, length = b == BACKSLASH, length + 1
        elif b == QUOTE:
            in_string, length, tail, start = True, 0, b"", i + 1
        elif b == OPEN_ARRAY or b == OPEN_OBJECT:
            frames += (0 if b == OPEN_ARRAY else OBJECT,)
        elif b in CLOSERS:
            frames = frames[:-1]
        elif b == COMMA and frames and frames[-1] != OBJECT:
            frames = frames[:-1] + (frames[-1] + 1,)
    tail = (tail + piece[start:])[-TAIL:] if in_string else b""
    return JsonScan(in_string, escaped, length, frames, tail)


def repeating(tail: bytes) -> bool:
    """Whether `tail` ends in one unit of at most LOOP_UNIT bytes repeated LOOP_REPEATS times, over
    at least LOOP_MIN bytes (a number string's few zeros are not a loop; 32 of them are)."""
    n = len(tail)
    for unit in range(1, LOOP_UNIT + 1):
        span = max(LOOP_REPEATS * unit, LOOP_MIN)
        if span > n:
            return False
        if tail[n - span:] == (tail[n - unit:] * (span // unit + 1))[-span:]:
            return True
    return False


class Limits(NamedTuple):
    """JsonOptions' close_strings_at, close_arrays_at, close_depth_at (None: that one is off)."""
    strings_at: int | None = None
    arrays_at: int | None = None
    depth_at: int | None = None


def limit(state: JsonScan, limits: Limits) -> str | None:
    """Which limit the next token must keep: "string" (start with `"`), "array" (start with
    `]`), "depth" (open no container), or None."""
    strings_at, arrays_at, depth_at = limits
    deep = depth_at is not None and len(state.frames) >= depth_at
    if state.in_string:  # a token may end the string and open a container: `":{`
        if strings_at is not None and not state.escaped and state.length >= strings_at and repeating(state.tail):
            return "string"
        return "depth in string" if deep and not state.escaped else None
    if arrays_at is not None and state.frames and state.frames[-1] != OBJECT and state.frames[-1] + 1 >= arrays_at:
        return "array"  # frames[-1] + 1 items begun; the grammar says whether the last is complete
    return "depth" if deep else None


def keeps(kind: str, piece: bytes) -> bool:
    """Whether a token of these bytes keeps the limit `kind` (see limit)."""
    if kind == "string":
        return piece.startswith(b'"')
    if kind == "array":
        return piece.startswith(b"]")
    return not opens_container(piece, kind == "depth in string")


def opens_container(piece: bytes, in_string: bool = False) -> bool:
    """Whether `piece`, read outside a string (or inside one), ever goes deeper than where it
    starts (`{`, `[`, `":{`; `},{` stays at the same depth)."""
    rise, depth = 0, 0
    state = JsonScan(in_string=in_string)
    for b in piece:
        before = state.in_string
        state = scan(state, bytes([b]))
        if not before and not state.in_string:
            depth += (b in (OPEN_ARRAY, OPEN_OBJECT)) - (b in CLOSERS)
            rise = max(rise, depth)
    return rise > 0
