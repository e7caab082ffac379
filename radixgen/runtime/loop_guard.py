"""The loop guard (SamplingParams.loop_guard): a request whose output has turned into one short
pattern repeated (a small model writing "0000…" inside a number, or the same array item again and
again under a grammar that allows it) ends early with finish_reason "length" instead of burning its
whole max_new_tokens budget. Off by default: a loop the model would have left on its own is cut.

A request loops when its last `window` tokens equal the `window` tokens `p` places before them for
some period p <= window // 2: the tail is periodic over window + p tokens, three repeats or more."""
from __future__ import annotations

MIN_WINDOW = 8  # shorter windows would end legitimate text ("1, 1, 1, 1")


def is_looping(ids: list[int], window: int) -> bool:
    """Whether the last `window` tokens of `ids` repeat with a period of at most window // 2.
    Cost: at most window // 2 slice comparisons of `window` ints, in C."""
    n = len(ids)
    if n < window + 1:
        return False
    tail = ids[n - window:]
    for p in range(1, window // 2 + 1):
        if n - window - p < 0:
            break
        if ids[n - window - p: n - p] == tail:
            return True
    return False
