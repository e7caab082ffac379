"""Regex pieces for JSON text: escaping, strings, literals (enum/const), numbers and formats.

Everything here is written in the syntax subset shared by Rust's regex crate (outlines-core) and
Python's `re` (tests), and none of it ever matches a raw control byte: JSON forbids them
unescaped, and the end-marker workaround in automata/index.py relies on it.
"""
from __future__ import annotations

import json
from typing import Any

HEX = "[0-9a-fA-F]"
# One decoded character of a JSON string, in any of its encodings. \u escapes of lone
# surrogates are excluded, so that one match is always exactly one code point (lengths count).
STRING_CHAR = (r'(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]'
               rf"|\\u(?:[0-9a-cA-Ce-fE-F]{HEX}{{3}}|[dD][0-7]{HEX}{{2}})"
               rf"|\\u[dD][89abAB]{HEX}{{2}}\\u[dD][c-fC-F]{HEX}{{2}})")
# Numbers without digit limits (JsonOptions' limits are json_numbers.number_regex's arguments).
INTEGER = r"-?(?:0|[1-9][0-9]*)"
NUMBER = INTEGER + r"(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
BOOLEAN, NULL = "(?:true|false)", "null"

_META = set(r"\.+*?()|[]{}^$")
_CLASS_META = set("\\]^[-&~")
_SHORT = {'"': '\\\\"', "\\": "\\\\\\\\", "\b": "\\\\b", "\f": "\\\\f", "\n": "\\\\n",
          "\r": "\\\\r", "\t": "\\\\t"}


def escape(text: str) -> str:
    """Regex matching `text` literally (Rust- and Python-compatible escapes)."""
    out = []
    for ch in text:
        if ch in _META:
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


def class_char(ch: str) -> str:
    """`ch` escaped for use inside [...]."""
    if ch in _CLASS_META:
        return "\\" + ch
    if ord(ch) < 0x20 or ord(ch) == 0x7F:
        return f"\\x{ord(ch):02x}"
    return ch


def hex_any_case(digits: str) -> str:
    return "".join(f"[{d.lower()}{d.upper()}]" if d.isalpha() else d for d in digits)


def u_escape(cp: int) -> str:
    """Regex for the \\uXXXX form(s) of code point `cp` (a surrogate pair past the BMP)."""
    if cp < 0x10000:
        return "\\\\u" + hex_any_case(f"{cp:04x}")
    cp -= 0x10000
    hi, lo = 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF)
    return "\\\\u" + hex_any_case(f"{hi:04x}") + "\\\\u" + hex_any_case(f"{lo:04x}")


def encode_char(ch: str) -> str:
    """Regex for every way json.dumps (ASCII-escaped or not) can write the character `ch`."""
    cp = ord(ch)
    if ch in _SHORT:
        return _SHORT[ch] if cp >= 0x20 or ch in '"\\' else f"(?:{_SHORT[ch]}|{u_escape(cp)})"
    if cp < 0x20:
        return u_escape(cp)
    if cp < 0x7F:
        return escape(ch)
    return f"(?:{escape(ch)}|{u_escape(cp)})"


def string_literal(text: str) -> str:
    return '"' + "".join(encode_char(c) for c in text) + '"'


def json_literal(value: Any, ws: str) -> str:
    """Regex for one JSON value exactly (enum / const), in schema key order."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not value.is_integer():
            return escape(json.dumps(value))
        return escape(str(int(value))) + r"(?:\.0)?"  # 1 and 1.0 are the same JSON number
    if isinstance(value, str):
        return string_literal(value)
    if isinstance(value, list):
        return r"\[" + ("," + ws).join(json_literal(v, ws) for v in value) + r"\]"
    if isinstance(value, dict):
        members = (f"{string_literal(k)}:{ws}{json_literal(v, ws)}" for k, v in value.items())
        return r"\{" + ("," + ws).join(members) + r"\}"
    raise ValueError(f"not a JSON value: {value!r}")


# ---- integer ranges ---------------------------------------------------------------------

def _same_length(lo: str, hi: str) -> str:
    """Decimal strings of len(lo) digits between lo and hi (no leading-zero rule here)."""
    if not lo:
        return ""
    if lo == hi:
        return lo
    if len(lo) == 1:
        return f"[{lo}-{hi}]"
    rest = len(lo) - 1
    if lo[1:] == "0" * rest and hi[1:] == "9" * rest:
        return f"[{lo[0]}-{hi[0]}][0-9]{{{rest}}}"
    if lo[0] == hi[0]:
        return lo[0] + _same_length(lo[1:], hi[1:])
    parts = [lo[0] + f"(?:{_same_length(lo[1:], '9' * rest)})"]
    if int(hi[0]) - int(lo[0]) > 1:
        parts.append(f"[{int(lo[0]) + 1}-{int(hi[0]) - 1}][0-9]{{{rest}}}")
    parts.append(hi[0] + f"(?:{_same_length('0' * rest, hi[1:])})")
    return "(?:" + "|".join(parts) + ")"


def natural_range(lo: int, hi: int | None) -> str | None:
    """Regex for the decimal naturals lo..hi (hi None: unbounded), no leading zeros."""
    if hi is not None and hi < lo:
        return None
    parts = []
    top = len(str(hi)) if hi is not None else len(str(lo))
    for width in range(len(str(lo)), top + 1):
        a = max(lo, 0 if width == 1 else 10 ** (width - 1))
        b = 10 ** width - 1 if hi is None else min(hi, 10 ** width - 1)
        if a <= b:
            parts.append(_same_length(str(a), str(b)))
    if hi is None:
        parts.append(f"[1-9][0-9]{{{top},}}")
    return "(?:" + "|".join(p for p in parts if p) + ")"


def integer_range(lo: int | None, hi: int | None) -> str | None:
    """Regex for the JSON integers in [lo, hi] (None: unbounded on that side)."""
    parts = []
    if hi is None or hi >= 0:
        parts.append(natural_range(max(lo or 0, 0) if lo is not None else 0, hi))
    if lo is None or lo < 0:  # negatives are "-" and a magnitude in [max(1, -hi), -lo]
        mag = natural_range(max(1, -hi) if hi is not None else 1, -lo if lo is not None else None)
        parts.append("-" + mag if mag else None)
    parts = [p for p in parts if p]
    return "(?:" + "|".join(parts) + ")" if parts else None


# ---- formats ------------------------------------------------------------------------------

_LEAP = r"(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)"
DATE = (r"(?:[0-9]{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
        r"|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))"
        rf"|{_LEAP}-02-29)")
TIME = (r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?"
        r"(?:[zZ]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_H16 = HEX + "{1,4}"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_URI_CHAR = r"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})"
FORMATS = {
    "date": DATE,
    "time": TIME,
    "date-time": DATE + "[Tt]" + TIME,
    "uuid": f"{HEX}{{8}}-{HEX}{{4}}-{HEX}{{4}}-{HEX}{{4}}-{HEX}{{12}}",
    "ipv4": rf"(?:{_OCTET}\.){{3}}{_OCTET}",
    "ipv6": "(?:" + "|".join([
        f"(?:{_H16}:){{7}}{_H16}", f"(?:{_H16}:){{1,7}}:", f"(?:{_H16}:){{1,6}}:{_H16}",
        *[f"(?:{_H16}:){{1,{k}}}(?::{_H16}){{1,{7 - k}}}" for k in range(1, 6)],
        f":(?:(?::{_H16}){{1,7}}|:)"]) + ")",
    "hostname": rf"{_LABEL}(?:\.{_LABEL})*",
    "email": r"[A-Za-z0-9!#$%&'*+=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+=?^_`{|}~-]+)*"
             rf"@{_LABEL}(?:\.{_LABEL})+",
    "uri": rf"[A-Za-z][A-Za-z0-9+.\-]*:{_URI_CHAR}*",
    "uri-reference": rf"(?:[A-Za-z][A-Za-z0-9+.\-]*:)?{_URI_CHAR}*",
}
FORMATS["idn-email"] = FORMATS["email"]
FORMATS["iri"] = FORMATS["uri"]
FORMATS["iri-reference"] = FORMATS["uri-reference"]
# Formats JSON Schema defines that we cannot write as a regex: refused, never ignored.
# Any other format name is an annotation with no validation meaning (e.g. "int32").
UNSUPPORTED_FORMATS = {"regex", "json-pointer", "relative-json-pointer", "uri-template",
                       "duration", "idn-hostname"}


# ---- repetition ---------------------------------------------------------------------------

def repeat(rx: str, lo: int, hi: int | None) -> str:
    """`rx` repeated lo..hi times (hi None: unbounded)."""
    if hi == 0:
        return ""
    if (lo, hi) == (0, None):
        return f"(?:{rx})*"
    if (lo, hi) == (0, 1):
        return f"(?:{rx})?"
    return f"(?:{rx}){{{lo},{'' if hi is None else hi}}}"


# ---- strings with a length ----------------------------------------------------------------

# One character, counted by maxLength only: any \u escape counts as one (a surrogate pair then
# counts two, which only makes the bound stricter). 13 DFA states a position against 24.
FREE_CHAR = r'(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})'
# Free-form and unconstrained strings use FREE_CHAR too (nothing is counted there).
FREE_STRING = f'"{FREE_CHAR}*"'
# Printable ASCII and short escapes: 2 states a position, for the far end of long bounds.
ASCII_CHAR = r'(?:[ !#-\[\]-~]|\\["\\/bfnrt])'
EXACT_UNTIL = 32  # positions past this (beyond minLength) are ASCII_CHAR
LENGTH_CAP = 128  # a larger maxLength is enforced as this (if minLength allows)


def bounded_string(lo: int, hi: int | None, length_cap: int = LENGTH_CAP,
                   exact_until: int = EXACT_UNTIL) -> str | None:
    """Regex for a JSON string of lo..hi characters.

    A DFA counts characters by copying the character automaton once per position, so cost is
    positions x states-per-character, and every state costs a pass over the vocabulary when the
    index is built. Hence three narrowings (the text written is always valid): the first `lo`
    positions use the exact unit, the next up to EXACT_UNTIL the lean one, positions beyond
    that only printable ASCII and short escapes, and no more than LENGTH_CAP characters
    (maxLength 4096 would otherwise cost ~8,000 states; capped it is ~600).
    """
    if hi is not None and hi < lo:
        return None
    if hi is not None and hi > max(lo, length_cap):
        hi = max(lo, length_cap)
    head = f"{STRING_CHAR}{{{lo}}}" if lo else ""
    if hi is None:
        return f'"{head}{FREE_CHAR}*"'
    lean = max(min(hi, exact_until) - lo, 0)
    far = hi - max(lo, exact_until)
    if far <= 0:
        return f'"{head}{repeat(FREE_CHAR, 0, lean)}"'
    if lean == 0:
        return f'"{head}{repeat(ASCII_CHAR, 0, far)}"'
    # (lean full, then far ones) | (lean not full): both start alike, so the DFA runs them together
    tail = f"(?:{repeat(FREE_CHAR, lean, lean)}{repeat(ASCII_CHAR, 0, far)}|{repeat(FREE_CHAR, 0, lean - 1)})"
    return f'"{head}{tail}"'
