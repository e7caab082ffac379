"""Helpers for the grammar tests: tiny hand-made vocabularies, and forcing text through a
grammar's masks token by token (imported by plain name: pytest puts this folder on sys.path)."""
from __future__ import annotations

from typing import Sequence

from radixgen.constrained import CompiledGrammar, TokenVocab, build_token_vocab, make_bitmask


TINY_EOS = 0


def tiny_vocab(pieces: Sequence[str]) -> TokenVocab:
    """Token 0 is EOS; token i (i >= 1) is pieces[i - 1]."""
    return build_token_vocab([None, *(p.encode() for p in pieces)], TINY_EOS)


def tiny_ids(vocab_pieces: Sequence[str], text: str) -> list[int]:
    """Character-by-character token ids of `text` in a tiny vocabulary."""
    return [list(vocab_pieces).index(c) + 1 for c in text]


def mask_allows(bitmask, row: int, token_id: int) -> bool:
    return bool((int(bitmask[row, token_id >> 5]) >> (token_id & 31)) & 1)


def forced_through(grammar: CompiledGrammar, token_ids: Sequence[int]) -> bool:
    """True iff every token is allowed by the mask when generated, and EOS at the end."""
    matcher, bitmask = grammar.new_matcher(), make_bitmask(1, grammar.vocab_size)
    for tid in [*token_ids, grammar.eos_token_id]:
        matcher.fill_bitmask(bitmask, 0)
        allowed = mask_allows(bitmask, 0, tid)
        assert allowed == matcher.is_allowed(tid), "mask and is_allowed disagree"
        if not allowed:
            return False
        assert matcher.advance(tid)
    assert matcher.is_finished()
    return True


def byte_ids(grammar: CompiledGrammar, text: str) -> list[int]:
    """The text as single-byte tokens (byte-level BPE has one for every byte)."""
    table = grammar.token_vocab.byte_token
    ids = [int(table[b]) for b in text.encode()]
    assert all(i >= 0 for i in ids), "the vocabulary lacks a single-byte token"
    return ids


def encode(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False)
