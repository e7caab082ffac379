"""Numbers for the JSON-schema converter: digit limits, decimal bounds and multipleOf.

Every regex here is a subset of the numbers the schema allows. Two kinds of narrowing:

* digit limits (JsonOptions.int_digits / frac_digits / exp_digits): a small model that may
  write digits without end will (greedy decoding loops on "0000..."), so, as llama.cpp's
  json-schema-to-grammar does, an integer part has at most 16 digits and a fraction at most 16;
  an exponent at most 3 digits (every finite double fits, and it cannot loop). None lifts a limit.
  A bound that needs more digits than the limit widens it for that number (never empty).
* float safety: validators parse "0.30000000000000001" to the double 0.3, so a text that is
  above a bound as a decimal can equal it as a double. Inclusive bounds are safe (rounding is
  monotonic and the bound's shortest repr rounds to the bound); an exclusive bound x > b is
  written as x >= the next double above b (rounded up to the fraction limit), likewise below.
"""
from __future__ import annotations

import math
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Callable, Optional

from ..errors import UnsupportedSchemaError
from .json_values import integer_range, natural_range

Limit = Optional[int]
DecBound = tuple[Decimal, bool]  # (value, exclusive)
MAX_MULTIPLES = 256  # multipleOf values enumerated when no exact regex exists (a narrowing)
MAX_SUFFIXES = 1000  # residues written out for a multipleOf that divides a power of ten


def digits(lo: int, limit: Limit) -> str:
    """`[0-9]` repeated lo..limit times (limit None: unbounded)."""
    return f"[0-9]{{{lo},}}" if limit is None else f"[0-9]{{{lo},{max(lo, limit)}}}"


def integer_regex(int_digits: Limit) -> str:
    """Any JSON integer, at most `int_digits` digits."""
    tail = "[0-9]*" if int_digits is None else f"[0-9]{{0,{int_digits - 1}}}"
    return rf"-?(?:0|[1-9]{tail})"


def number_regex(int_digits: Limit, frac_digits: Limit, exp_digits: Limit) -> str:
    """Any JSON number within the digit limits (exp_digits 0: no exponent)."""
    frac = rf"(?:\.{digits(1, frac_digits)})?"
    exp = "" if exp_digits == 0 else rf"(?:[eE][+-]?{digits(1, exp_digits)})?"
    return integer_regex(int_digits) + frac + exp


def cap_integers(lo: int | None, hi: int | None, int_digits: Limit) -> tuple[int | None, int | None]:
    """An open side of an integer range closed at the digit limit (never past the other bound)."""
    if int_digits is None:
        return lo, hi
    top = 10 ** int_digits - 1
    if hi is None:  # as many digits as the lower bound has, if that is more
        hi = max(top, 10 ** len(str(abs(lo))) - 1 if lo is not None else 0)
    if lo is None:
        lo = min(-top, -(10 ** len(str(abs(hi))) - 1))
    return lo, hi


# ---- decimal bounds ---------------------------------------------------------------------

def decimal_bound(value: int | float, lower: bool, exclusive: bool, frac_digits: Limit) -> Decimal:
    """An inclusive decimal bound such that every text on its side is on the right side of
    `value` once a validator parses it (see the module doc)."""
    if isinstance(value, float) and not value.is_integer():
        if exclusive:
            step = math.nextafter(value, math.inf if lower else -math.inf)
            exact = Decimal(step)  # the double's exact binary value
            if frac_digits is None:
                return Decimal(repr(step))
            return exact.quantize(Decimal(1).scaleb(-frac_digits), ROUND_CEILING if lower else ROUND_FLOOR)
        return Decimal(repr(value))
    n = int(value)
    if isinstance(value, int) and abs(n) > 2 ** 53 and float(n) != n:
        # an integer bound no double equals: fractions near it round past it, so move it inward
        # to a double (texts with a fraction parse as doubles, integers stay exact)
        f = float(n)
        f = f if (f >= n) == lower else math.nextafter(f, math.inf if lower else -math.inf)
        n = int(f)
    if exclusive:  # integers compare exactly; a fraction near n may round onto n: next double
        step = math.nextafter(float(n), math.inf if lower else -math.inf)
        d = Decimal(step)
        if frac_digits is None:
            d2 = Decimal(repr(step))
            return d2 if (d2 > n if lower else d2 < n) else d
        return d.quantize(Decimal(1).scaleb(-frac_digits), ROUND_CEILING if lower else ROUND_FLOOR)
    return Decimal(n)


def _split(d: Decimal) -> tuple[int, str]:
    """(integer part, fraction digits without trailing zeros) of a non-negative decimal."""
    i = int(d)
    f = format(d - i, "f")
    f = f.split(".")[1].rstrip("0") if "." in f else ""
    return i, f


def _fraction(lo: str | None, hi: str | None, limit: Limit) -> tuple[bool, str | None]:
    """Fraction digit strings s (1..limit digits) with 0.lo <= 0.s <= 0.hi (None: no bound on
    that side): (whether "no fraction" (= 0) is in range, the regex for s or None). lo and hi
    have no trailing zeros; a digit-by-digit walk that stays tight on at most two chains."""
    def rest(i: int, tl: bool, th: bool, need: bool) -> str | None:
        tl = tl and i < len(lo)  # type: ignore[arg-type]  # past lo's digits: anything is >=
        room = None if limit is None else limit - i
        if room is not None and room <= 0:
            return None if need or tl else ""
        if th and i >= len(hi):  # type: ignore[arg-type]  # past hi's digits: zeros only
            return digits(1 if need else 0, room).replace("[0-9]", "0")
        if not tl and not th:
            return digits(1 if need else 0, room)
        a, b = (int(lo[i]) if tl else 0), (int(hi[i]) if th else 9)  # type: ignore[index]
        groups: dict[tuple[bool, bool], list[int]] = {}
        for d in range(a, b + 1):
            groups.setdefault((tl and d == a, th and d == b), []).append(d)
        alts = []
        for (ntl, nth), ds in groups.items():
            tail = rest(i + 1, ntl, nth, False)
            if tail is not None:
                alts.append((str(ds[0]) if len(ds) == 1 else f"[{ds[0]}-{ds[-1]}]") + tail)
        body = None if not alts else alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        if need or tl:  # ending here reads as zeros: below lo while tight on it
            return body
        return "" if body is None else f"(?:{body})?"

    lo_zero = lo is None or not lo
    return lo_zero, rest(0, lo is not None, hi is not None, True)


def _with_fraction(ints: str | None, frac: tuple[bool, str | None]) -> str | None:
    if ints is None:
        return None
    zero_ok, rx = frac
    if rx is None:
        return ints if zero_ok else None
    return ints + (rf"(?:\.{rx})?" if zero_ok else rf"\.{rx}")


def _magnitudes(lo: Decimal | None, hi: Decimal | None, int_digits: Limit, frac: Limit) -> list[str]:
    """Unsigned decimals I[.F] with lo <= value <= hi (inclusive decimal bounds >= 0, None:
    open), I at most int_digits digits unless a bound needs more."""
    li, lf = _split(lo) if lo is not None else (0, "")
    if hi is None:
        hi_i, hf = (None if int_digits is None else max(10 ** int_digits - 1, li)), None
    else:
        hi_i, hf = _split(hi)
    if hi_i is not None and hi_i < li:
        return []
    low = lf or None
    if hi_i == li:
        return [p for p in [_with_fraction(natural_range(li, li), _fraction(low, hf, frac))] if p]
    out = [_with_fraction(natural_range(li, li), _fraction(low, None, frac))]
    if hi_i is None or hi_i > li + 1:
        mid = natural_range(li + 1, None if hi_i is None else hi_i - 1)
        out.append(_with_fraction(mid, _fraction(None, None, frac)))
    if hi_i is not None:
        out.append(_with_fraction(natural_range(hi_i, hi_i), _fraction(None, hf, frac)))
    return [p for p in out if p]


def decimal_range(lo: Decimal | None, hi: Decimal | None, int_digits: Limit, frac_digits: Limit) -> str | None:
    """Regex for JSON numbers (no exponent) with lo <= x <= hi (inclusive decimals, None: open);
    "-0" is never written. The fraction limit widens to what the bounds need."""
    need = max([len(_split(abs(b))[1]) for b in (lo, hi) if b is not None] + [1])
    frac = None if frac_digits is None else max(need, frac_digits)
    parts = []
    if hi is None or hi >= 0:  # x >= 0, as its magnitude
        parts += _magnitudes(lo if lo is not None and lo > 0 else None, hi, int_digits, frac)
    if lo is None or lo < 0:  # x < 0: "-" and a magnitude M in [-hi or the least > 0, -lo]
        # (without a fraction limit the least is 10^-digits of the bounds: a narrowing)
        smallest = Decimal(1).scaleb(-(frac if frac is not None else need))
        m_lo = -hi if hi is not None and hi < 0 else smallest
        mags = _magnitudes(m_lo, None if lo is None else -lo, int_digits, frac)
        parts += ["-" + m for m in mags if m]
    parts = list(dict.fromkeys(parts))
    return "(?:" + "|".join(parts) + ")" if parts else None


# ---- multipleOf ---------------------------------------------------------------------------

def _power_of_ten_for(k: int) -> int | None:
    """The least m with k | 10^m (k's only prime factors are 2 and 5), else None."""
    m, p = 0, 1
    while p % k:
        m, p = m + 1, p * 10
        if m > 24:
            return None
    return m


def _naturals_multiple(lo: int, hi: int | None, k: int, m: int) -> str | None:
    """Naturals in [lo, hi] divisible by k, where k | 10^m: n = q * 10^m + r, and k | n iff
    k | r, so n's last m digits decide (a DFA needs only those)."""
    mod = 10 ** m
    residues = [r for r in range(0, mod, k)]
    def tails(a: int, b: int) -> str | None:  # m-digit residues in [a, b], zero-padded
        rs = [f"{r:0{m}d}" for r in residues if a <= r <= b]
        return None if not rs else "(?:" + "|".join(rs) + ")"
    parts = []
    # n < 10^m: n = r, written without leading zeros
    small = [str(r) for r in residues if lo <= r and (hi is None or r <= hi)]
    if small:
        parts.append("(?:" + "|".join(small) + ")")
    q_lo, q_hi = max(lo // mod, 1), None if hi is None else hi // mod
    if q_hi is not None and q_hi < q_lo:
        return "(?:" + "|".join(parts) + ")" if parts else None
    r_lo = lo % mod if q_lo == lo // mod else 0
    r_hi = hi % mod if hi is not None else mod - 1
    if q_hi == q_lo:
        pieces = [(q_lo, q_lo, r_lo, r_hi)]
    else:
        pieces = [(q_lo, q_lo, r_lo, mod - 1)]
        if q_hi is None or q_hi > q_lo + 1:
            pieces.append((q_lo + 1, None if q_hi is None else q_hi - 1, 0, mod - 1))
        if q_hi is not None:
            pieces.append((q_hi, q_hi, 0, r_hi))
    for a, b, ra, rb in pieces:
        qs, rs = natural_range(a, b), tails(ra, rb)
        if qs and rs:
            parts.append(qs + rs)
    return "(?:" + "|".join(parts) + ")" if parts else None


def integer_multiples(lo: int | None, hi: int | None, k: int) -> tuple[str | None, bool]:
    """(regex for the integers in [lo, hi] divisible by k, whether it is exact). Exact when k
    divides a power of ten with few residues; otherwise (divisibility by 3 or 7 is a k-state
    DFA over the digits, which as regex text grows exponentially) the MAX_MULTIPLES multiples
    nearest zero inside the range are written out: a narrowing."""
    m = _power_of_ten_for(k)
    if m is not None and 10 ** m // k <= MAX_SUFFIXES:
        parts = []
        if hi is None or hi >= 0:
            parts.append(_naturals_multiple(max(lo, 0) if lo is not None else 0, hi, k, m))
        if lo is None or lo < 0:
            mag = _naturals_multiple(max(1, -hi) if hi is not None else 1, None if lo is None else -lo, k, m)
            parts.append(None if mag is None else "-" + mag)
        kept = [p for p in parts if p]
        return ("(?:" + "|".join(kept) + ")" if kept else None), True
    first = 0 if (lo is None or lo <= 0) and (hi is None or hi >= 0) else (lo if lo is not None and lo > 0 else hi)
    start = -((-first) // k) * k if first >= 0 else (first // k) * k  # the multiple nearest zero
    values: list[int] = []
    for j in range(MAX_MULTIPLES * 2):
        v = start + (j + 1) // 2 * k * (1 if j % 2 else -1) if first == 0 else start + j * k * (1 if first > 0 else -1)
        if (lo is None or v >= lo) and (hi is None or v <= hi):
            values.append(v)
        if len(values) >= MAX_MULTIPLES:
            break
    values = sorted(set(values))
    exact = lo is not None and hi is not None and len(values) == len(range(-(-lo // k) * k, hi + 1, k))
    return ("(?:" + "|".join(str(v) for v in values) + ")" if values else None), exact


# ---- a number schema ---------------------------------------------------------------------

def number_value(limits: tuple[Limit, Limit, Limit], t: str, s: dict, ptr: str) -> str | None:
    """Regex for a number or integer schema `s` (bounds, multipleOf) within the digit limits
    (int_digits, frac_digits, exp_digits)."""
    int_digits, frac_digits, exp_digits = limits
    k = 1
    step = s.get("multipleOf")
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0:
            raise UnsupportedSchemaError("multipleOf", ptr + "/multipleOf", f"multipleOf {step!r} is not > 0")
        if not float(step).is_integer():
            # which decimals are multiples then depends on float rounding in the validator
            # (0.07 / 0.01 is 7.000000000000001 in doubles): no regex agrees with every one
            raise UnsupportedSchemaError("multipleOf", ptr + "/multipleOf", f"a fractional multipleOf ({step})")
        t, k = "integer", int(step)  # a multiple of an integer is an integer
    lo = _bound(s, "minimum", "exclusiveMinimum", ptr)
    hi = _bound(s, "maximum", "exclusiveMaximum", ptr)
    if t == "integer":
        a = None if lo is None else (math.floor(lo[0]) + 1 if lo[1] else math.ceil(lo[0]))
        b = None if hi is None else (math.ceil(hi[0]) - 1 if hi[1] else math.floor(hi[0]))
        if a is None and b is None and k == 1:
            return integer_regex(int_digits)
        a, b = cap_integers(a, b, int_digits)
        if a is not None and b is not None and a > b:
            return None
        return integer_range(a, b) if k == 1 else integer_multiples(a, b, k)[0]
    if lo is None and hi is None:
        return number_regex(int_digits, frac_digits, exp_digits)
    dl = None if lo is None else decimal_bound(lo[0], True, lo[1], frac_digits)
    dh = None if hi is None else decimal_bound(hi[0], False, hi[1], frac_digits)
    if dl is not None and dh is not None and dl > dh:
        return None
    return decimal_range(dl, dh, int_digits, frac_digits)


def _bound(s: dict, inclusive: str, exclusive: str, ptr: str) -> tuple[float, bool] | None:
    """(value, is_exclusive) from draft-4 (boolean exclusive*) or draft-6+ (numeric) keywords."""
    bounds = []
    if isinstance(s.get(inclusive), (int, float)):
        excl = s.get(exclusive) is True
        bounds.append((s[inclusive], excl))
    if isinstance(s.get(exclusive), (int, float)) and not isinstance(s.get(exclusive), bool):
        bounds.append((s[exclusive], True))
    if not bounds:
        return None
    pick: Callable = max if inclusive == "minimum" else min
    return pick(bounds, key=lambda b: (b[0], b[1] if inclusive == "minimum" else not b[1]))
