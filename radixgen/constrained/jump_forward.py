"""Forced text for jump-forward: what every continuation of a state starts with.

Computed on the tokens themselves rather than on a second (character-level) automaton: the
next byte is forced when all tokens allowed in a state begin with the same byte (the grammar's
`first_bytes`: read off the mask row here, or off the byte-level automaton by LazyGrammar). The state then
steps through that byte's single-byte token, which byte-level BPE and SentencePiece byte
fallback both have for every byte. This stays exact for the tokens the model can actually
write, costs one pass over a mask row per state (cached), and never re-parses the regex, which
interegular would do in Python at the cost of seconds for large JSON schemas.
"""
from __future__ import annotations

import codecs
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # grammar_base.py imports this module; the grammar is only a type here
    from .grammar_base import Grammar

MAX_FORCED_BYTES = 4096  # a bound for safety; forced runs are keys and punctuation in practice


def mask_first_bytes(grammar: "Grammar", state: int) -> np.ndarray:
    """Distinct first bytes of the real tokens allowed in `state`, read off its mask row."""
    row = grammar.row(state)
    bits = np.unpackbits(row.view(np.uint8), bitorder="little")[: grammar.vocab_size].astype(bool)
    bits[grammar.eos_token_id] = False
    firsts = grammar.token_vocab.first_byte[bits]
    return np.unique(firsts[firsts >= 0])


def compute_forced_bytes(grammar: "Grammar", state: int) -> bytes:
    """Longest byte string forced from `state`, cut to whole UTF-8 characters.

    Stops where the text could end (accepting state), where two bytes are possible, or where the
    forced byte has no single-byte token to step by.
    """
    out = bytearray()
    if grammar.token_vocab.first_byte.size == 0:
        return b""
    while len(out) < MAX_FORCED_BYTES and not grammar.is_accepting(state):
        firsts = grammar.first_bytes(state)
        if firsts.size != 1:
            break
        byte = int(firsts[0])
        tok = int(grammar.token_vocab.byte_token[byte])
        nxt = grammar.next_state(state, tok) if tok >= 0 else None
        if nxt is None:
            break
        out.append(byte)
        state = nxt
    return _whole_chars(bytes(out))


def _whole_chars(data: bytes) -> bytes:
    """The longest prefix of `data` made of complete UTF-8 characters; empty if `data` starts
    inside a character (the previous token ended mid-character)."""
    if data and 0x80 <= data[0] < 0xC0:
        return b""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    try:
        text = decoder.decode(data, final=False)
    except UnicodeDecodeError:
        return b""
    return text.encode("utf-8")
