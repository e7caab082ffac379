"""One forward's inputs, as rank 0 builds them and as every other rank rebuilds them.

The other ranks hold no scheduler and no slot table: rank 0 sends, per step, a fixed header (over
the worker's stdin: it also wakes an idle worker, which waits there without any timeout) and one
int64 payload broadcast over gloo, with the slot-table rows of the batch's requests only. Slot
numbers are rank 0's (its allocator hands them out), so every rank's pool has the same layout.
"""
from __future__ import annotations

import struct
from typing import NamedTuple

import torch

from radixgen.kernels import AttnMeta

HEADER = struct.Struct("<8q")   # op, T, B, N, max_extend, max_seq, is_decode, has_rope_long
FORWARD, STOP = 1, 2


class StepInputs(NamedTuple):
    ids: torch.Tensor         # int64 [T] token ids of every request's new tokens, flat
    positions: torch.Tensor   # int64 [T]
    meta: AttnMeta
    logit_rows: torch.Tensor  # int64 [N] flat rows whose logits are computed
    rope_long: torch.Tensor | None = None  # bool [T]: the token takes long-rope rows (Phi-3 128k)


def pack(step: StepInputs) -> tuple[bytes, torch.Tensor]:
    """-> (header, payload): payload = ids, positions, out_slots [T each], prefix_lens, extend_lens
    [B each], logit_rows [N], the requests' slot rows [B, max_seq] flattened, then rope_long [T]
    if there is one."""
    m = step.meta
    rows = m.req_to_slot[m.req_rows, : m.max_seq].to(torch.int64).reshape(-1)
    longs = [] if step.rope_long is None else [step.rope_long.to(torch.int64)]
    payload = torch.cat([step.ids, step.positions, m.out_slots, m.prefix_lens, m.extend_lens,
                         step.logit_rows, rows, *longs]).cpu()
    header = HEADER.pack(FORWARD, step.ids.numel(), m.batch_size, step.logit_rows.numel(),
                         m.max_extend, m.max_seq, int(m.is_decode), len(longs))
    return header, payload


def payload_len(header: tuple[int, ...]) -> int:
    _, t, b, n, _, max_seq, _, has_long = header
    return 3 * t + 2 * b + n + b * max_seq + has_long * t


def unpack(header: tuple[int, ...], payload: torch.Tensor) -> StepInputs:
    """The StepInputs `pack` was given, with the slot table cut to the batch's rows (row b is the
    b-th request's, so req_rows = 0..B-1)."""
    _, t, b, n, max_extend, max_seq, is_decode, has_long = header
    ids, positions, out_slots, prefix_lens, extend_lens, logit_rows, rows, *longs = payload.split(
        [t, t, t, b, b, n, b * max_seq] + [t] * has_long)
    meta = AttnMeta(req_to_slot=rows.reshape(b, max_seq).to(torch.int32), req_rows=torch.arange(b),
                    prefix_lens=prefix_lens, extend_lens=extend_lens, out_slots=out_slots,
                    max_extend=max_extend, max_seq=max_seq, is_decode=bool(is_decode))
    return StepInputs(ids, positions, meta, logit_rows, longs[0].bool() if longs else None)
