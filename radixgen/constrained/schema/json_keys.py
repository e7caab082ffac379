"""Keys of additional members: every key except the declared ones, as a regex that keeps the
object's automaton small."""
from __future__ import annotations

from functools import lru_cache
from typing import Callable

from .json_pattern import char_set, complement
from .json_values import FREE_CHAR, class_char, encode_char

# A key character that is not printable ASCII: raw non-ASCII, or an escape that cannot spell a
# printable ASCII character (json.dumps never escapes those).
_NOT_ASCII_CHAR = (r'(?:[^\x00-\x7f]|\\["\\bfnrt]'
                   r"|\\u(?:00[01][0-9a-fA-F]|00[89a-fA-F][0-9a-fA-F]|0[1-9a-fA-F][0-9a-fA-F]{2}"
                   r"|[1-9a-cA-C][0-9a-fA-F]{3}|[dD][0-7][0-9a-fA-F]{2}|[e-fE-F][0-9a-fA-F]{3}"
                   r"|[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}))")
_PRINTABLE = {chr(c) for c in range(0x20, 0x7F)} - {'"', "\\"}
_TAIL = FREE_CHAR + "*"  # anything, once a key differs


def _trie(keys: tuple[str, ...]) -> dict:
    root: dict = {}
    for k in keys:
        node = root
        for ch in k:
            node = node.setdefault(ch, {})
        node[""] = {}
    return root


def _trie_rx(node: dict, here: Callable[[dict], str | None]) -> str | None:
    """Regex over the trie: at each node, `here(node)` ends the match, or a child char goes on."""
    alts = [here(node)] + [encode_char(c) + rx for c in node if c
                           for rx in [_trie_rx(node[c], here)] if rx is not None]
    alts = [a for a in alts if a is not None]
    if not alts:
        return None
    return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"


@lru_cache(maxsize=256)
def key_not_in(keys: tuple[str, ...]) -> str:
    """String-body regex for keys other than `keys`.

    A key differs from all of them at some character and then anything may follow (one shared
    tail, so the DFA does not copy the rest of the object per point of difference), or it stops
    at a trie node that is no key's end. A differing printable ASCII character is checked per
    trie node; any other character (non-ASCII, or an escape) differs at every node, so it is
    written once after "any prefix" and shared too. Declared characters are matched only in
    the form json.dumps writes them, so a \\u-escaped spelling cannot sneak a declared key in.
    """
    trie = _trie(keys)
    stop = _trie_rx(trie, lambda n: None if "" in n else "")
    if any(c not in _PRINTABLE for k in keys for c in k):  # rare: exact but larger
        differ = _trie_rx(trie, lambda n: char_set(complement([(ord(c), ord(c)) for c in n if c])))
        body = f"{differ}{_TAIL}"
    else:
        def ascii_other(node: dict) -> str | None:
            rest = sorted(_PRINTABLE - set(node))
            return "[" + "".join(class_char(c) for c in rest) + "]" if rest else None
        prefix = _trie_rx(trie, lambda n: "")
        body = f"(?:{_trie_rx(trie, ascii_other)}|{prefix}{_NOT_ASCII_CHAR}){_TAIL}"
    return body if stop is None else f"(?:{body}|{stop})"
