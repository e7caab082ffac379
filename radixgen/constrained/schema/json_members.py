"""The body of a JSON object: members in order, optional ones optional, commas between."""
from __future__ import annotations

from functools import lru_cache

from .json_values import repeat

def members_body(members: tuple[tuple[str, bool], ...], extra: str | None, sep: str,
             lo: int, hi: int | None) -> str | None:
    """Body of an object: members in order (required or optional), then `extra` repeated, with
    the total count in [lo, hi]."""
    if lo <= 1 and hi is None:
        return _members_by_last(members, extra, sep, lo)
    return _members_counted(members, extra, sep, lo, hi)


BLOCK = 6            # small optional members written flat per nesting level
BIG_MEMBER = 2_000   # regex characters above which a member is never written twice flat


def _members_by_last(members: tuple[tuple[str, bool], ...], extra: str | None, sep: str,
                     lo: int) -> str | None:
    """Members in order (required ones always), then additional ones, comma-separated.

    Commas need "is this the last member written?", and a regex can only say it by writing a
    member twice. The cheap way for the DFA: alternatives by *last* member, i.e. the chain of
    earlier members each with its comma, then that member (P). The alternatives begin alike, so
    the DFA reads them in parallel and stays linear (11,351 -> 745 states for 30 optional
    properties against "first member, then the rest"). Three costs are balanced on the regex
    text: small optional members go flat in blocks of BLOCK alternatives (few nesting levels:
    regex-syntax refuses more than ~80 nested optional groups), a big member is written twice
    only if it is smaller than what follows it, else the follow-up is written twice (S), so a
    deep chain of nested objects does not double at every level.
    """
    last_req = max((i for i, (_, req) in enumerate(members) if req), default=-1)
    after: str | None = f"(?:{extra}{sep})*{extra}" if extra is not None else None
    block: list[str] = []  # small optional members, in order, waiting to be written

    def flush() -> None:
        nonlocal after, block
        if not block:
            return
        links = [f"(?:{m}{sep})?" for m in block]
        alts = ["".join(links[:i]) + m for i, m in enumerate(block)]
        if after is not None:
            alts.append("".join(links) + after)
        after, block = "(?:" + "|".join(alts) + ")", []

    for j in reversed(range(len(members))):
        member, is_req = members[j]
        if j < last_req:  # a later member is required: never last, so written once
            flush()
            after = (member + sep if is_req else f"(?:{member}{sep})?") + after  # type: ignore[operator]
        elif is_req:  # the last required member
            flush()
            after = member if after is None else f"{member}(?:{sep}{after})?"
        elif len(member) <= BIG_MEMBER:
            block.insert(0, member)
            if len(block) == BLOCK:
                flush()
        else:
            flush()
            if after is None:
                after = member
            elif len(member) > len(after):  # S: the member once, what follows twice
                after = f"(?:{member}(?:{sep}{after})?|{after})"
            else:  # P: the member twice, what follows once
                after = f"(?:(?:{member}{sep})?{after}|{member})"
    flush()
    if last_req >= 0 or lo >= 1:
        return after
    return "" if after is None else f"(?:{after})?"


def _members_counted(members: tuple[tuple[str, bool], ...], extra: str | None, sep: str,
                     lo: int, hi: int | None) -> str | None:
    """The same with a member count to respect: states (position, count so far), the count
    saturated at the bound that matters, memoised. Quadratic or worse in the members, so only
    used with minProperties > 1 or maxProperties."""
    n = len(members)
    cap = hi if hi is not None else max(lo, 1)

    @lru_cache(maxsize=None)
    def rest(i: int, count: int) -> str | None:
        if i == n:
            return _extras(count)
        member, is_req = members[i]
        lead = sep if count else ""
        if hi is None and count == cap and not is_req:  # saturated: both ways continue alike
            after = rest(i + 1, count)
            return None if after is None else f"(?:{lead}{member})?{after}"
        take = None
        if hi is None or count < hi:
            after = rest(i + 1, min(count + 1, cap))
            take = None if after is None else lead + member + after
        skip = None if is_req else rest(i + 1, count)
        if take is None or skip is None:
            return take if skip is None else skip
        return f"(?:{take}|{skip})"

    def _extras(count: int) -> str | None:
        need = max(lo - count, 0)
        room = None if hi is None else hi - count
        if room is not None and room < need:
            return None
        if extra is None or room == 0:
            return "" if need == 0 else None
        if count:
            return repeat(sep + extra, need, room)
        more = repeat(extra + sep, max(need - 1, 0), None if room is None else room - 1)
        return more + extra if need else f"(?:{more}{extra})?"

    return rest(0, 0)
