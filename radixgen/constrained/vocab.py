"""Token bytes of a tokenizer and the outlines-core `Vocabulary` built from them.

outlines-core matches regexes over bytes, so every token must be given as the exact bytes it
appends to the output. Byte-level BPE (GPT-2, Llama 3, SmolLM2) stores bytes mapped to printable
characters; SentencePiece stores "▁" for a space and "<0xNN>" for raw bytes. Special tokens (chat
markers, EOS) produce no text a grammar can match and are left out.

The vocabulary also carries one *sentinel* token per candidate end marker (see automata/index.py for
why): an ASCII control byte given an id past the real vocabulary, so it never reaches a mask.
It also keeps every token's bytes as a padded matrix (TokenMatrix), for grammars that compute
masks themselves by walking all tokens at once (lazy_grammar.py).
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from outlines_core import Vocabulary

# Candidate end markers, most preferred first: control bytes JSON text never contains raw, then
# tab, CR and newline, last: a regex written with `.` (any character but a newline, SGLang's IPv4
# example) can produce every other control byte, and newline is then the one byte it cannot.
MARKERS: tuple[bytes, ...] = tuple(bytes([b]) for b in [*range(0x00, 0x09), 0x0B, 0x0C,
                                                          *range(0x0E, 0x20), 0x7F, 0x09, 0x0D, 0x0A])
_MARKER_BYTES = frozenset(m[0] for m in MARKERS)
JSON_WS = b" \t\n\r"  # the bytes JSON counts as whitespace


def _bytes_to_unicode() -> dict[str, int]:
    """GPT-2's printable stand-in for each byte, inverted: character -> byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(printable, chars)}


def _is_byte_level(tokenizer: Any) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    decoder = getattr(backend, "decoder", None)
    return decoder is not None and "ByteLevel" in repr(decoder)


def token_bytes(tokenizer: Any) -> list[bytes | None]:
    """bytes of every token id (None for special / undecodable tokens), indexed by id."""
    vocab: dict[str, int] = tokenizer.get_vocab()
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    for tid, tok in (getattr(tokenizer, "added_tokens_decoder", None) or {}).items():
        if getattr(tok, "special", False):
            special.add(tid)
    out: list[bytes | None] = [None] * (max(vocab.values()) + 1)
    byte_level = _is_byte_level(tokenizer)
    u2b = _bytes_to_unicode()
    for text, tid in vocab.items():
        if tid in special:
            continue
        if byte_level:
            if all(c in u2b for c in text):
                out[tid] = bytes(u2b[c] for c in text)
        elif len(text) == 6 and text.startswith("<0x") and text.endswith(">"):
            out[tid] = bytes([int(text[3:5], 16)])  # SentencePiece byte fallback
        else:
            out[tid] = text.replace("▁", " ").encode("utf-8")
    return out


@dataclass(frozen=True)
class TokenMatrix:
    """The bytes of every real token (not EOS, not special), laid out for walking all tokens
    through an automaton one byte position at a time.

    Rows are sorted by length, longest first, so the tokens still unfinished at position p are
    the first `longer[p]` rows. ids: int64 [n] token id of each row; columns: uint8 [L, n]
    (L the longest token; position-major so one position is a contiguous gather; 0 past a
    token's end); longer: int64 [L + 1], rows longer than p bytes; pieces: bytes of each
    token id, None where a token has none (indexed by id, `size` entries).
    """
    ids: np.ndarray
    columns: np.ndarray
    longer: np.ndarray
    pieces: tuple[bytes | None, ...]


def _token_matrix(pieces: list[bytes | None], eos_token_id: int, size: int) -> TokenMatrix:
    kept = [(tid, p) for tid, p in enumerate(pieces) if p and tid != eos_token_id]
    kept.sort(key=lambda item: -len(item[1]))
    lens = np.array([len(p) for _, p in kept], dtype=np.int64)
    width = int(lens[0]) if kept else 0
    padded = b"".join(piece.ljust(width, b"\0") for _, piece in kept)
    columns = np.frombuffer(padded, dtype=np.uint8).reshape(len(kept), width).T.copy()
    longer = np.searchsorted(-lens, -np.arange(width + 1), side="left")  # lens descend
    by_id = [p if p and tid != eos_token_id else None for tid, p in enumerate(pieces)]
    return TokenMatrix(np.array([tid for tid, _ in kept], dtype=np.int64), columns, longer,
                       tuple(by_id + [None] * (size - len(by_id))))


@dataclass(frozen=True)
class TokenVocab:
    """Everything compiled grammars share about one tokenizer.

    `shards` are outlines-core Vocabularies that split the real tokens between them (each also
    holds every single-byte token and the sentinels, so each index built on one explores every
    automaton state): indexes of the shards are built on parallel threads, outlines-core
    releasing the GIL, and their allowed tokens united. `shard_of[id]` says which shard holds
    a token. `size` is the number of real ids (mask width in tokens), `sentinel_ids[m]` the id
    of marker byte m, `marker_token_ids[m]` the real ids whose bytes contain m (int64),
    `first_byte` an int16 [size] array (-1 for no bytes) and `byte_token[b]` a real id whose
    bytes are exactly b, or -1. `matrix` holds every real token's bytes (TokenMatrix).
    """
    shards: tuple[Vocabulary, ...]
    shard_of: np.ndarray
    size: int
    eos_token_id: int
    sentinel_ids: dict[bytes, int]
    marker_token_ids: dict[bytes, np.ndarray]
    first_byte: np.ndarray
    byte_token: np.ndarray
    matrix: TokenMatrix

    @cached_property
    def by_bytes(self) -> tuple[list[bytes], np.ndarray]:
        """Real tokens sorted by their bytes: (bytes list, int64 ids), for prefix searches
        (the tokens starting with p are one slice, found by bisection)."""
        kept = sorted((p, tid) for tid, p in enumerate(self.matrix.pieces) if p)
        return [p for p, _ in kept], np.array([tid for _, tid in kept], dtype=np.int64)

    def ids_starting_with(self, prefix: bytes) -> np.ndarray:
        """int64 ids of the real tokens whose bytes start with `prefix` (one bisected slice)."""
        pieces, ids = self.by_bytes
        lo = bisect.bisect_left(pieces, prefix)
        # the first byte string past every one that starts with prefix: drop trailing 0xff bytes,
        # raise the last byte by one (none left: every string from lo on starts with prefix)
        head = prefix.rstrip(b"\xff")
        hi = bisect.bisect_left(pieces, head[:-1] + bytes([head[-1] + 1])) if head else len(pieces)
        return ids[lo:hi]

    @cached_property
    def blank_ids(self) -> np.ndarray:
        """int64 ids of the real tokens that are whitespace alone."""
        return np.array([tid for tid, p in enumerate(self.matrix.pieces) if p and not p.strip()], dtype=np.int64)

    @cached_property
    def container_opening_ids(self) -> dict[bool, np.ndarray]:
        """in_string -> int64 ids of the real tokens that, read from outside a JSON string (False)
        or inside one (True), open a container deeper than where they start (json_close.py)."""
        from .json_close import opens_container
        candidates = [(tid, p) for tid, p in enumerate(self.matrix.pieces) if p and (b"{" in p or b"[" in p)]
        return {inside: np.array([tid for tid, p in candidates if opens_container(p, inside)], dtype=np.int64)
                for inside in (False, True)}

    @cached_property
    def whitespace_runs(self) -> frozenset[bytes]:
        """The runs of JSON whitespace (space, tab, newline, return) that tokens start with."""
        return frozenset(p[:len(p) - len(p.lstrip(JSON_WS))] for p in self.by_bytes[0]) - {b""}


def build_token_vocab(pieces: list[bytes | None], eos_token_id: int,
                      size: int | None = None, num_shards: int = 1) -> TokenVocab:
    """pieces[id] = bytes of token id (None: never allowed by a grammar)."""
    size = max(size or 0, len(pieces), eos_token_id + 1)
    grouped: dict[bytes, list[int]] = {}
    first_byte = np.full(size, -1, dtype=np.int16)
    byte_token = np.full(256, -1, dtype=np.int64)
    for tid, piece in enumerate(pieces):
        if piece is None or tid == eos_token_id or not piece:
            continue
        grouped.setdefault(piece, []).append(tid)
        first_byte[tid] = piece[0]
        if len(piece) == 1 and byte_token[piece[0]] < 0:
            byte_token[piece[0]] = tid
    sentinel_ids = {m: size + i for i, m in enumerate(MARKERS)}
    for m, sid in sentinel_ids.items():
        grouped.setdefault(m, []).append(sid)
    holders: dict[bytes, list[int]] = {m: [] for m in MARKERS}
    for tid, piece in enumerate(pieces):
        if piece is not None and tid != eos_token_id:
            for b in set(piece).intersection(_MARKER_BYTES):
                holders[bytes([b])].append(tid)
    contains = {m: np.array(ids, dtype=np.int64) for m, ids in holders.items()}
    parts: list[dict[bytes, list[int]]] = [{} for _ in range(num_shards)]
    shard_of = np.zeros(size, dtype=np.int8)
    for n, (piece, ids) in enumerate(grouped.items()):
        if len(piece) == 1:  # single bytes (and sentinels) go to every shard
            for part in parts:
                part[piece] = ids
        else:
            parts[n % num_shards][piece] = ids
            shard_of[[i for i in ids if i < size]] = n % num_shards
    shards = tuple(Vocabulary(eos_token_id, part) for part in parts)
    return TokenVocab(shards, shard_of, size, eos_token_id, sentinel_ids, contains, first_byte,
                      byte_token, _token_matrix(pieces, eos_token_id, size))


def token_vocab_from_tokenizer(tokenizer: Any, num_shards: int = 2) -> TokenVocab:
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos_token_id; a grammar needs one to end on")
    pieces = token_bytes(tokenizer)
    if sum(1 for p in pieces if p is not None and len(p) == 1) < 256:
        num_shards = 1  # shards rely on single-byte tokens reaching every automaton state
    return build_token_vocab(pieces, eos, len(tokenizer), num_shards)
