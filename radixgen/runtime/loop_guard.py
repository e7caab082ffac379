"""The loop guard (SamplingParams.loop_guard): a request whose output has turned into one short
pattern repeated (a small model writing "0000…" inside a number, or the same array item again and
again under a grammar that allows it) ends early with finish_reason "length" instead of burning its
whole max_new_tokens budget. Off by default: a loop the model would have left on its own is cut.

A request loops when its last `window` tokens equal the `window` tokens `p` places before them for
some period p <= window // 2: the tail is periodic over window + p tokens, three repeats or more.

loop_guard_action="escape" steers instead of ending: the token that would carry the loop on (the one
that followed the same place a period ago) is banned for the next sampled token, unless the grammar
allows nothing else; the model then takes its next best choice (often a closing quote or bracket).
After MAX_ESCAPES escapes a request that still loops ends as with "length"."""
from __future__ import annotations

MIN_WINDOW = 8  # shorter windows would end legitimate text ("1, 1, 1, 1")
MAX_ESCAPES = 32
ACTIONS = ("length", "escape")


def loop_period(ids: list[int], window: int) -> int:
    """The smallest period p <= window // 2 with which the last `window` tokens of `ids` repeat, or
    0. Cost: at most window // 2 slice comparisons of `window` ints, in C."""
    n = len(ids)
    if n < window + 1:
        return 0
    tail = ids[n - window:]
    for p in range(1, window // 2 + 1):
        if n - window - p < 0:
            break
        if ids[n - window - p: n - p] == tail:
            return p
    return 0


def is_looping(ids: list[int], window: int) -> bool:
    return loop_period(ids, window) > 0
