"""Arrays for the JSON-schema converter: positional items, then the rest, counted."""
from __future__ import annotations

from ..automata.json_free import UNIQUE_REGEX
from .base import ConverterBase
from ..errors import UnsupportedSchemaError
from .json_values import repeat



def _positional(s: dict) -> tuple[list, object, str, str]:
    """(positional item schemas, schema of the rest, and the keywords naming both): draft
    2020-12 prefixItems/items, or the older tuple form items/additionalItems."""
    if "prefixItems" in s:
        return list(s["prefixItems"]), s.get("items", True), "prefixItems", "items"
    items = s.get("items", True)
    if isinstance(items, list):
        return items, s.get("additionalItems", True), "items", "additionalItems"
    return [], items, "", "items"


def array_regex(conv: ConverterBase, s: dict, ptr: str) -> str | None:
    """uniqueItems: with slots (see JsonOptions) the array is marked with a UNIQUE byte and the
    matcher keeps its items distinct; without, arrays are narrowed to one item."""
    unique = s.get("uniqueItems") is True and (s.get("maxItems") is None or s["maxItems"] > 1)
    if unique and conv.options.slots:
        rx = _array_regex(conv, {k: v for k, v in s.items() if k != "uniqueItems"}, ptr)
        return None if rx is None else UNIQUE_REGEX + rx
    return _array_regex(conv, s, ptr)


def _array_regex(conv: ConverterBase, s: dict, ptr: str) -> str | None:
    sep = "," + conv.ws
    lo, hi = s.get("minItems", 0), s.get("maxItems")
    if hi is None and conv.options.items_cap is not None:  # a finishing default (JsonOptions)
        hi = max(lo, conv.options.items_cap)
    if s.get("uniqueItems") is True and (hi is None or hi > 1):
        if lo > 1:
            raise UnsupportedSchemaError("uniqueItems", f"{ptr}/uniqueItems",
                                         "distinct items cannot be expressed for minItems > 1")
        hi = 1  # a narrowing that honours the constraint: one item is always unique
    prefix, rest, prefix_kw, rest_kw = _positional(s)
    prefix_rx: list[str] = []
    for i, item in enumerate(prefix):
        if hi is not None and i >= hi:
            break
        rx = conv.value(item, f"{ptr}/{prefix_kw}/{i}")
        if rx is None:  # no valid item at position i: arrays stop before it
            hi = i if hi is None else min(hi, i)
            break
        prefix_rx.append(rx)
    k = len(prefix_rx)
    rest_rx = None
    if k == len(prefix) and (hi is None or hi > k):
        depth = conv.options.extra_depth if prefix else conv.options.any_depth - 1
        rest_rx = conv.value(rest, f"{ptr}/{rest_kw}") if rest is not True else conv.any_value(depth)
    if rest_rx is None:
        hi = k if hi is None else min(hi, k)
    if hi is not None and lo > hi:
        return None
    if k == 0:
        if hi == 0 or rest_rx is None:
            return r"\[\]" if lo == 0 else None
        # (item sep)* item, not item (sep item)*: the two copies of the item then start together
        # and the DFA reads them in parallel instead of holding each separately
        body = repeat(rest_rx + sep, max(lo - 1, 0), None if hi is None else hi - 1) + rest_rx
        return r"\[" + (body if lo >= 1 else f"(?:{body})?") + r"\]"
    seq = "" if rest_rx is None else repeat(sep + rest_rx, max(lo - k, 0), None if hi is None else hi - k)
    for j in reversed(range(k)):
        seq = ("" if j == 0 else sep) + prefix_rx[j] + seq
        if j >= lo:
            seq = f"(?:{seq})?"
    return r"\[" + seq + r"\]"
