"""A GGUF file's quantized tensors as they are (Q4_0 / Q4_1 / Q8_0 blocks; Q4_K super-blocks as
32-blocks with fp32 scales), keyed by the Hugging Face names of the converted model, cached once
beside it as `gguf_blocks.safetensors` (rewritten when the formats read have grown since).

Why: the converted cache holds the weights dequantized to fp32; requantizing those would round
them again. Read with the `gguf` package, the blocks are repacked bit for bit (kernels/cpu_quant.py)
and only reordered by rows where transformers' loader reorders them (Llama's q/k projections are
stored permuted for llama.cpp's rotary layout). Every tensor is checked once, at caching time: its
blocks, dequantized, must equal the converted fp32 weight exactly, or it is left out (that layer
then stays float, or is requantized by `int8` / `int4`).
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from radixgen.kernels.cpu_quant import FORMATS, BlockWeight, dequantize, from_gguf

log = logging.getLogger("radixgen")
BLOCKS_FILE = "gguf_blocks.safetensors"
_FORMATS_KEY = "__formats__"  # metadata: the formats the writer read (a cache from before Q4_K lacks it)


def blocks_current(model_dir: Path) -> bool:
    """Whether model_dir's cached blocks were written by a reader of every format we read now."""
    path = model_dir / BLOCKS_FILE
    if not path.is_file():
        return False
    with safe_open(str(path), "pt") as f:
        return (f.metadata() or {}).get(_FORMATS_KEY) == ",".join(FORMATS)


def _row_orders(n: int, heads: list[int]) -> list[torch.Tensor | None]:
    """None (rows as stored), then the row order transformers' reverse permute gives per head count."""
    orders: list[torch.Tensor | None] = [None]
    for h in heads:
        if h and n % (2 * h) == 0:
            rows = torch.arange(n).reshape(h, n // h // 2, 2).transpose(1, 2).reshape(n)
            orders.append(rows)
    return orders


def _match(blocks: BlockWeight, dense: torch.Tensor, heads: list[int]) -> BlockWeight | None:
    """`blocks` in the row order whose dequantization equals `dense` exactly; None if none does."""
    for order in _row_orders(blocks.shape[0], heads):
        cand = blocks if order is None else blocks.rows(order)
        if torch.equal(dequantize(cand), dense.float()):
            return cand
    return None


def write_blocks(gguf_path: Path, model_dir: Path) -> None:
    """Cache the GGUF's block tensors that match the converted weights in model_dir (see above)."""
    import gguf

    reader = gguf.GGUFReader(gguf_path)
    arch_name = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    config = json.loads((model_dir / "config.json").read_text())
    arch = {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}.get(arch_name)
    tensors = {t.name: t for t in reader.tensors}
    out: dict[str, torch.Tensor] = {}
    formats: dict[str, str] = {}
    heads = [config.get("num_attention_heads", 0), config.get("num_key_value_heads", 0)]
    with safe_open(str(model_dir / "model.safetensors"), "pt") as dense_file:
        names = list(dense_file.keys())
        tmap = gguf.get_tensor_name_map(arch, config.get("num_hidden_layers", 0)) if arch is not None else None
        for name in names:
            src = tmap.get_name(name, try_suffixes=(".weight", ".bias")) if tmap else None
            t = tensors.get(src or "")
            if t is None or t.tensor_type.name not in FORMATS:
                continue
            k, n = (int(x) for x in t.shape[:2])
            blocks = _match(from_gguf(t.data, t.tensor_type.name, n, k), dense_file.get_tensor(name), heads)
            if blocks is None:
                log.warning("GGUF tensor %s does not match its converted weight %s; left out", src, name)
                continue
            formats[name] = blocks.fmt
            out[name + ".qs"], out[name + ".d"] = blocks.qs, blocks.d
            if blocks.m is not None:
                out[name + ".m"] = blocks.m
    tmp = model_dir / f".{BLOCKS_FILE}.{os.getpid()}.tmp"
    save_file(out, str(tmp), metadata={**formats, _FORMATS_KEY: ",".join(FORMATS)})
    os.replace(tmp, model_dir / BLOCKS_FILE)


def has_blocks(model_dir: Path) -> bool:
    """Whether model_dir was converted from a GGUF file whose quantized blocks are cached beside it."""
    return (model_dir / BLOCKS_FILE).is_file()


def load_blocks(model_dir: Path) -> dict[str, BlockWeight]:
    """The cached blocks of model_dir by HF tensor name ({} where there is no GGUF source)."""
    path = model_dir / BLOCKS_FILE
    if not has_blocks(model_dir):
        return {}
    blocks: dict[str, BlockWeight] = {}
    with safe_open(str(path), "pt") as f:
        for name, fmt in (f.metadata() or {}).items():
            if name == _FORMATS_KEY:
                continue
            m = f.get_tensor(name + ".m") if name + ".m" in f.keys() else None
            blocks[name] = BlockWeight(fmt, f.get_tensor(name + ".qs"), f.get_tensor(name + ".d"), m)
    return blocks
