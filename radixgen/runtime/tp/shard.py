"""Megatron-style sharding of a decoder over `size` ranks, on our fused weight names.

Rank r holds (H, KVH, I, V: heads, KV heads, intermediate size, vocabulary):
  qkv_proj   column-parallel: its H/size query heads, KVH/size KV heads (a GQA group stays on one rank)
  o_proj     row-parallel: the input columns of those heads; partial sums, all-reduced
  gate_up    column-parallel: I/size rows of gate and the same of up
  down_proj  row-parallel: those I/size input columns; all-reduced
  embedding  vocab-parallel: rows [r V/size, (r+1) V/size); others' ids give zeros; all-reduced
  lm_head    vocab-parallel: the same rows; logits [N, V/size] gathered to rank 0
Norms (and Qwen3 / Gemma per-head q/k norms) are copied whole. Two all-reduces a layer, one for
the embedding, one gather of the logits a forward.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import torch
from torch import nn

from ..models.arch import ModelArch
from ..models.linear import Linear
from .comm import TPComm


def check_divisible(arch: ModelArch, size: int) -> None:
    """Refuse, naming them, the sizes that do not split evenly over `size` ranks."""
    sizes = {"num_attention_heads": arch.num_heads, "num_key_value_heads": arch.num_kv_heads,
             "intermediate_size": arch.intermediate_size, "vocab_size": arch.vocab_size}
    bad = [f"{name}={value}" for name, value in sizes.items() if value % size]
    if bad:
        raise ValueError(f"tp_size={size} must divide the model's {', '.join(bad)}: "
                         f"pick a tp_size that divides {' and '.join(b.split('=')[0] for b in bad)}")


def local_arch(arch: ModelArch, size: int) -> ModelArch:
    """The shapes one rank's modules are built with (head_dim and hidden size stay whole)."""
    return dataclasses.replace(arch, num_heads=arch.num_heads // size, num_kv_heads=arch.num_kv_heads // size,
                               intermediate_size=arch.intermediate_size // size,
                               vocab_size=arch.vocab_size // size)


def shard_weights(arch: ModelArch, rank: int, size: int) -> Callable[[dict], dict]:
    """A function mapping the full weights (our names, models/llama.py's layer_weights) to rank's."""
    d = arch.head_dim
    qkv_split = [arch.num_heads * d, arch.num_kv_heads * d, arch.num_kv_heads * d]

    def part(w: torch.Tensor, dim: int = 0) -> torch.Tensor:
        return w.chunk(size, dim)[rank].contiguous()

    def shard(own: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for name, w in own.items():
            if ".qkv_proj." in name:      # [(H + 2 KVH) D, ...]: each of q, k, v split by heads
                w = torch.cat([part(x) for x in w.split(qkv_split)])
            elif ".gate_up_proj." in name:  # [2I, hidden]: gate then up, each split
                w = torch.cat([part(x) for x in w.chunk(2)])
            elif name.endswith(("o_proj.weight", "down_proj.weight")):  # [hidden, in]: input columns
                w = part(w, 1)
            elif name in ("embed_tokens.weight", "lm_head.weight"):  # [V, hidden]: vocab rows
                w = part(w)
            out[name] = w
        return out
    return shard


class RowParallel(nn.Module):
    """A row-parallel Linear: this rank's partial product, summed over the ranks."""

    def __init__(self, inner: Linear, comm: TPComm):
        super().__init__()
        assert inner.bias is None, "a row-parallel bias would be added size times"
        self.inner, self.comm = inner, comm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.comm.all_reduce(self.inner(x).contiguous())  # [T, hidden]

    def warm_up(self, max_rows: int) -> None:
        self.inner.warm_up(max_rows)  # kernels only, no collective


class VocabParallelEmbedding(nn.Module):
    """Rows [start, start + V/size) of the table: ids outside them look up zeros, then the ranks'
    rows are summed, so each id gets exactly its owner's row."""

    def __init__(self, inner: nn.Embedding, comm: TPComm):
        super().__init__()
        self.inner, self.comm = inner, comm
        self.start = comm.rank * inner.num_embeddings

    @property
    def weight(self) -> nn.Parameter:
        return self.inner.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        local = ids - self.start                                   # int64 [T]
        mine = (local >= 0) & (local < self.inner.num_embeddings)
        x = self.inner(torch.where(mine, local, 0))                # [T, hidden]
        return self.comm.all_reduce(x * mine.unsqueeze(-1).to(x.dtype))


class ParallelLMHead(nn.Module):
    """Vocab-parallel LM head: logits of this rank's vocabulary rows, gathered to rank 0 [N, V]."""

    def __init__(self, inner: Linear, comm: TPComm):
        super().__init__()
        self.inner, self.comm = inner, comm

    @property
    def weight(self) -> nn.Parameter:
        return self.inner.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.comm.gather_last_dim(self.inner(x))

    def warm_up(self, max_rows: int) -> None:
        self.inner.warm_up(max_rows)


def parallelize(model: nn.Module, comm: TPComm) -> None:
    """Wrap a loaded shard's modules with their collectives (after load_hf_state_dict: the weight
    names and the tied embedding / LM head stay as they were loaded)."""
    for layer in model.layers:
        layer.self_attn.o_proj = RowParallel(layer.self_attn.o_proj, comm)
        layer.mlp.down_proj = RowParallel(layer.mlp.down_proj, comm)
    model.embed_tokens = VocabParallelEmbedding(model.embed_tokens, comm)
    model.lm_head = ParallelLMHead(model.lm_head, comm)
