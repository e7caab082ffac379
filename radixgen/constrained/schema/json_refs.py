"""$ref for the JSON-schema converter: expanded in place, and recursion either unrolled to a
bound or, with JsonOptions.calls, written as a CALL byte that slot_automaton.py reads as "a value
of that $ref goes here" through its own small automaton (a pushdown: any depth, one copy).

Unrolling copies the referenced schema once per level and per use, so the regex text of a
recursive schema (a tree, a schema of schemas) grows geometrically with the bound, and a large
definition used in many places is copied into each; a call costs one byte where it is used and
one regex for the referenced schema, whatever the depth. Each distinct `$ref` (with its sibling
keywords) that recurs, or whose regex is longer than CALL_MIN_CHARS, gets a CALL byte (26 in
all; past them, copies again); its regex is converted with that `$ref` open, so a recursion
inside it is a call again.
"""
from __future__ import annotations

import json
from ..automata.json_free import CALL_BYTES
from .base import ConverterBase



CALL_MIN_CHARS = 2_000  # a $ref whose regex is longer is called, not copied, wherever it is used


def ref_regex(conv: ConverterBase, schema: dict, ptr: str) -> str | None:
    ref, key = schema["$ref"], json.dumps(schema, sort_keys=True)
    if _can_call(conv, key) and (ref in conv.ref_stack or key in conv.call_bytes):
        return _call(conv, schema, key, ptr)
    if conv.ref_stack.count(ref) >= conv.max_recursion:
        return None  # recursion unrolled to its bound: no deeper instances
    out = _expand(conv, schema, ptr)
    if out is not None and len(out) > CALL_MIN_CHARS and _can_call(conv, key):  # (bytes the
        return _call(conv, schema, key, ptr)  # expansion used are gone: ask again after it)
    return out


def _can_call(conv: ConverterBase, key: str) -> bool:
    return conv.options.calls and (key in conv.call_bytes or len(conv.call_bytes) < len(CALL_BYTES))


def _expand(conv: ConverterBase, schema: dict, ptr: str) -> str | None:
    ref = schema["$ref"]
    depth = conv.object_depth if conv.options.optional_depth is not None else 0
    key = (ref, tuple(conv.ref_stack), depth, json.dumps(schema, sort_keys=True))
    if key in conv.memo:
        return conv.memo[key]
    target = conv.resolve(ref, ptr)
    rest = {k: v for k, v in schema.items() if k != "$ref"}
    conv.ref_stack.append(ref)
    try:
        # siblings of $ref: applied as well (2019+ semantics; a safe subset under draft 7)
        out = conv.value({"allOf": [target, rest]} if rest else target, ref[1:] or ptr)
    finally:
        conv.ref_stack.pop()
    conv.memo[key] = out
    return out


def _call(conv: ConverterBase, schema: dict, key: str, ptr: str) -> str | None:
    """The CALL byte of this $ref as regex text, its regex converted on first use; None if the
    $ref admits no value (a use inside its own recursion, met before that was known, keeps a
    call that leads nowhere: the automaton has nothing to call there)."""
    byte = conv.call_bytes.get(key)
    if byte is None:
        byte = CALL_BYTES[len(conv.call_bytes)]
        conv.call_bytes[key] = byte
        saved = conv.ref_stack, conv.object_depth
        conv.ref_stack, conv.object_depth = [], 0  # the called regex starts afresh
        try:
            conv.calls[byte] = _expand(conv, schema, ptr)
        finally:
            conv.ref_stack, conv.object_depth = saved
    return None if conv.calls.get(byte, "") is None else f"\\x{byte:02x}"
