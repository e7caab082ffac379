"""Linears and embeddings over GGUF-style block-quantized weights (kernels/cpu_quant.py), and the
swap that puts them into a loaded Llama-family model (`quantize_model`, called by its quantize()).

Modes:
  * auto: a GGUF model keeps its own blocks (Q4_1 stays Q4_1, bit for bit, read by gguf_blocks.py),
    the embedding table too (rows dequantized at lookup); a tensor the GGUF holds in float stays float.
  * int8 / int4: every linear is quantized at load to Q8_0 / Q4_1 blocks (the LM head to Q8_0 with
    int4, as GGUF files keep it); where the GGUF already holds that format, its blocks are used as
    they are. The embedding table stays float.
Where the CPU has AVX2 + FMA + F16C, every call runs the panel kernel (cpu_quant_panel.cpp: 8
output columns per register, activations quantized per row and block to int8 on the fly), from 1
row to a prefill chunk; the weights are held in its layout only. Elsewhere (or with
RADIXGEN_QUANT_SCALAR=1) up to QUANT_MAX_ROWS rows run cpu_quant.cpp's plain C++ kernel and more
rows multiply fp32 tiles dequantized on the fly (at most PREFILL_TILE_BYTES of them at once).
"""
from __future__ import annotations

import logging
import os

import torch
import torch.nn.functional as F
from torch import nn

from radixgen.kernels import cpu_quant
from radixgen.kernels.cpu_quant import BlockWeight, PanelWeight, cat_rows, dequantize, dequantize_rows
from radixgen.kernels.cpu_quant_stack import QuantStack, StackLayer

from .layers import DecoderLayer

log = logging.getLogger("radixgen")
# The decode stack (one C++ call for all layers) takes decode steps of any batch (a 256-request seed
# run ~10% faster than layer by layer, AVX2 Zen 3, 1 thread) and other forwards of up to this many rows.
QUANT_MAX_ROWS = 16
PREFILL_TILE_BYTES = 4 << 20
# Fused linears of the model -> the HF tensors they stack along N (see LlamaForCausalLM.load_hf_state_dict).
FUSED = {"self_attn.qkv_proj": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
         "self_attn.o_proj": ("self_attn.o_proj",), "mlp.gate_up_proj": ("mlp.gate_proj", "mlp.up_proj"),
         "mlp.down_proj": ("mlp.down_proj",)}
MODE_FORMAT = {"int8": "Q8_0", "int4": "Q4_1"}
QUANTIZE_LM_HEAD = True


class BlockQuantLinear(nn.Module):
    """y = x W^T + b with W held as blocks only (no float copy); x of any float dtype, y in x's."""

    def __init__(self, weight: BlockWeight, bias: torch.Tensor | None):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        # Plain attributes, not buffers: model.to(dtype) must not cast the fp16 scales. One layout
        # is kept: the panels where their kernel runs, else the blocks as loaded.
        self.panels: PanelWeight | None = cpu_quant.pack_panels(weight) if cpu_quant.panels_available() else None
        self._blocks = weight if self.panels is None else None
        self.bias = None if bias is None else bias.detach().float().contiguous()
        self.tile_rows = max(1, PREFILL_TILE_BYTES // (4 * self.in_features))

    @property
    def weight_q(self) -> BlockWeight:
        """W as blocks (unpacked from the panels, exactly, when those are what is held)."""
        return self._blocks if self._blocks is not None else cpu_quant.unpack_panels(self.panels)

    @property
    def kernel_weight(self) -> BlockWeight | PanelWeight:
        """The layout this layer's kernel reads (what the decode stack's table points at)."""
        return self.panels if self.panels is not None else self._blocks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype, m = x.dtype, x.shape[0]
        if m == 0:
            return x.new_empty(0, self.out_features)
        x = x.float().contiguous()
        if self.panels is not None:
            y = cpu_quant.gemm_panels(x, self.panels, self.bias)
        elif m <= QUANT_MAX_ROWS:
            y = cpu_quant.gemm(x, self._blocks, self.bias)
        else:
            y = self._tiled(x)
        return y if dtype is torch.float32 else y.to(dtype)

    def _tiled(self, x: torch.Tensor) -> torch.Tensor:
        """x fp32 [M, K] -> [M, N] through fp32 tiles of W of tile_rows rows each."""
        n = self.out_features
        if n <= self.tile_rows:
            return F.linear(x, dequantize_rows(self._blocks, 0, n), self.bias)
        out = torch.empty(x.shape[0], n, dtype=torch.float32)  # [M, N]
        for n0 in range(0, n, self.tile_rows):
            n1 = min(n, n0 + self.tile_rows)
            out[:, n0:n1] = F.linear(x, dequantize_rows(self._blocks, n0, n1))
        return out if self.bias is None else out.add_(self.bias)

    def dequantized(self) -> torch.Tensor:
        return dequantize(self.weight_q)

    def warm_up(self, max_rows: int) -> None:
        """Nothing to build per shape."""

    def extra_repr(self) -> str:
        w = self.kernel_weight
        return f"in={self.in_features}, out={self.out_features}, {w.fmt}{' panels' if self.panels is not None else ''}"


class BlockQuantEmbedding(nn.Module):
    """Token embeddings held as blocks; a lookup dequantizes only the T rows it reads."""

    def __init__(self, weight: BlockWeight):
        super().__init__()
        self.weight_q = weight
        # An empty buffer that model.to(dtype) casts: the lookups come out in the model's dtype.
        self.register_buffer("dtype_probe", torch.zeros(0), persistent=False)

    @property
    def weight(self) -> torch.Tensor:
        """Only the device and dtype of the table (what the model's prepack() asks of it)."""
        return self.dtype_probe

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = dequantize(self.weight_q.rows(ids.reshape(-1).cpu()))       # fp32 [T, hidden]
        return rows.to(self.dtype_probe.dtype).reshape(*ids.shape, -1)


def _sources(model: nn.Module) -> dict[str, list[str]]:
    """Each Linear's module path -> the HF weight names it was built from (fused in this order)."""
    out: dict[str, list[str]] = {}
    for i in range(len(model.layers)):
        for fused, parts in FUSED.items():
            out[f"layers.{i}.{fused}"] = [f"model.layers.{i}.{p}.weight" for p in parts]
    out["lm_head"] = ["lm_head.weight"]
    return out


def _gguf_weight(names: list[str], blocks: dict[str, BlockWeight]) -> BlockWeight | None:
    if not all(n in blocks for n in names) or len({blocks[n].fmt for n in names}) != 1:
        return None
    return cat_rows([blocks[n] for n in names])


def quantize_model(model: nn.Module, mode: str, blocks: dict[str, BlockWeight], tied: bool) -> list[str]:
    """Swap model's Linears (and, with auto, its embedding) for block-quantized ones; returns a
    line per kind of swap, for the start-up log. `blocks`: the GGUF's own, by HF name ({} if none)."""
    blocks = dict(blocks)
    if tied and "model.embed_tokens.weight" in blocks:
        blocks.setdefault("lm_head.weight", blocks["model.embed_tokens.weight"])
    done: dict[str, int] = {}
    for path, names in _sources(model).items():
        parent_path, _, attr = path.rpartition(".")
        parent = model.get_submodule(parent_path) if parent_path else model
        linear = getattr(parent, attr)
        weight, origin = _gguf_weight(names, blocks), "GGUF's own"
        if mode in MODE_FORMAT and linear.in_features % cpu_quant.QK:
            log.warning("%s: in_features %d is not a multiple of %d; it stays float", path, linear.in_features,
                        cpu_quant.QK)
        elif mode in MODE_FORMAT:
            want = "Q8_0" if mode == "int4" and attr == "lm_head" else MODE_FORMAT[mode]
            if weight is None or weight.fmt != want:
                weight, origin = cpu_quant.quantize(linear.weight, want), "quantized at load"
        if weight is None or (attr == "lm_head" and not QUANTIZE_LM_HEAD):
            continue
        setattr(parent, attr, BlockQuantLinear(weight, linear.bias))
        key = f"{weight.fmt} ({origin})"
        done[key] = done.get(key, 0) + 1
    if mode == "auto" and "model.embed_tokens.weight" in blocks:
        model.embed_tokens = BlockQuantEmbedding(blocks["model.embed_tokens.weight"])
        done[f"embedding {blocks['model.embed_tokens.weight'].fmt}"] = 1
    return [f"{n} linears {k}" if not k.startswith("embedding") else k for k, n in done.items()]


def decode_stack(model: nn.Module) -> QuantStack | None:
    """The model's decoder layers as one kernel call for decode steps and forwards of up to
    QUANT_MAX_ROWS rows (kernels/cpu_quant_stack.py), or None where that kernel does not cover the
    model: a linear left float, GeLU, q/k norms, sliding windows, soft-capping, a family's own layer class.
    RADIXGEN_NO_QUANT_STACK=1 turns it off (A/B runs, tests of the per-layer path)."""
    arch = model.arch
    if (os.environ.get("RADIXGEN_NO_QUANT_STACK", "") not in ("", "0") or not cpu_quant.is_available()
            or arch.hidden_act != "silu" or arch.qk_norm or arch.max_window or arch.attn_softcap
            or len(model.rope_names) != 1):
        return None
    layers = []
    for layer in model.layers:
        attn, mlp = layer.self_attn, layer.mlp
        linears = (attn.qkv_proj, attn.o_proj, mlp.gate_up_proj, mlp.down_proj)
        if type(layer) is not DecoderLayer or not all(isinstance(m, BlockQuantLinear) for m in linears):
            return None
        if any(m.bias is not None for m in linears[1:]):
            return None
        layers.append(StackLayer(layer.input_layernorm.weight.detach(), layer.post_attention_layernorm.weight.detach(),
                                 attn.qkv_proj.kernel_weight, attn.qkv_proj.bias, attn.o_proj.kernel_weight,
                                 mlp.gate_up_proj.kernel_weight, mlp.down_proj.kernel_weight))
    first = model.layers[0].self_attn
    return QuantStack(layers, model.norm.weight.detach(), model.norm.eps, first.h, first.kvh, first.d, first.scale,
                      scalar=first.qkv_proj.panels is None)
