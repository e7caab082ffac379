"""Per-forward batch layout handed to every attention call (built once per step, shared by layers).

Tokens of a forward are flat: request b owns rows extend_start[b] : extend_start[b] + extend_lens[b]
of q / k / v, and its keys live in the pool at req_to_slot[req_rows[b], :seq_lens[b]].
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch


@dataclass(frozen=True)
class AttnMeta:
    req_to_slot: torch.Tensor   # int32 [R, max_context] KV slot of every token of every request row
    req_rows: torch.Tensor      # int64 [B] row of req_to_slot for each request in the batch
    prefix_lens: torch.Tensor   # int64 [B] tokens already in the pool before this forward
    extend_lens: torch.Tensor   # int64 [B] new tokens per request (all 1 when decoding)
    out_slots: torch.Tensor     # int64 [T] pool slot of each new token, T = extend_lens.sum()
    max_extend: int             # host copies of the maxima, so no kernel syncs to size its grid
    max_seq: int
    is_decode: bool
    window: int = 0             # sliding window: a token sees its last `window` keys (itself included); 0 = all
    softcap: float = 0.0        # scaled scores -> softcap * tanh(scores / softcap) before softmax (Gemma 2); 0 = off

    @property
    def batch_size(self) -> int:
        return int(self.req_rows.numel())

    @cached_property
    def seq_lens(self) -> torch.Tensor:  # int64 [B]
        return self.prefix_lens + self.extend_lens

    @cached_property
    def extend_start(self) -> torch.Tensor:  # int64 [B] first flat row of each request
        return torch.cumsum(self.extend_lens, 0) - self.extend_lens

    @cached_property
    def c_args(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(req_to_slot as int32, req_rows, prefix_lens, extend_lens as int64), contiguous, for the C++
        kernels: converted once per forward rather than once per layer."""
        return (self.req_to_slot.to(torch.int32).contiguous(),
                *(x.to(torch.int64).contiguous() for x in (self.req_rows, self.prefix_lens, self.extend_lens)))

    # ---- derived layouts for the padded torch path, computed once per forward ----
    @cached_property
    def kv_index(self) -> torch.Tensor:  # int64 [B, max_seq]; entries past seq_len are stale but in range
        return self.req_to_slot[self.req_rows, : self.max_seq].long()

    @cached_property
    def token_pos(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(b, i) for each flat new token: its request and its offset within that request's extend."""
        b = torch.repeat_interleave(torch.arange(self.batch_size, device=self.out_slots.device),
                                    self.extend_lens)
        i = torch.arange(b.numel(), device=b.device) - self.extend_start[b]
        return b, i

    @cached_property
    def mask(self) -> torch.Tensor:
        """bool [B, 1, Q, K]: new token i of request b sees keys j <= prefix_len[b] + i (causal), and
        with a sliding window only those with j > prefix_len[b] + i - window."""
        q = torch.arange(self.max_extend, device=self.out_slots.device)
        k = torch.arange(self.max_seq, device=self.out_slots.device)
        limit = self.prefix_lens[:, None] + q[None, :]  # [B, Q] last visible key
        limit = torch.minimum(limit, self.seq_lens[:, None] - 1)
        visible = k[None, None, :] <= limit[:, :, None]
        if self.window > 0:
            visible &= k[None, None, :] > limit[:, :, None] - self.window
        return visible[:, None]
