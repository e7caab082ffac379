"""ModelRunner: loads the model and the KV pool, packs a scheduled batch into flat tensors, runs it.

One forward covers every request of a batch: their new tokens are concatenated ([T]), and each
request's KV is found through its slot-table row (AttnMeta). Logits are computed only for the rows
that need them: the last token of each request that reaches its end, and prompt-logprob positions.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from transformers import AutoConfig, AutoTokenizer, GenerationConfig

from radixgen.kernels import AttnMeta, cpu_quant, get_backend, get_layer_ops

from .config import EngineConfig
from .memory_pool import KVPool
from .gguf_blocks import load_blocks
from .model_loader import load_state_dict, resolve_model_dir
from .models import registry
from .models.layers import ForwardContext
from .scheduler import ScheduledBatch

log = logging.getLogger("radixgen")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available")
    return torch.device(name)


def cpu_has_fast_bf16() -> bool:
    """AMX or AVX512-BF16: bf16 matmuls ran ~6x faster than fp32 on such a CPU (see DESIGN.md)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" or cpu_has_fast_bf16() else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def pick_quantization(name: str, device: torch.device, dtype: torch.dtype) -> str:
    """The config's quantization resolved to what the model's quantize() takes: "none"; "block:MODE"
    (auto / int8 / int4 over our block kernels, models/block_quant.py); or a PyTorch-kernel mode
    (models/quant.py: int8-dynamic, and int8 / int4 where our kernel library could not be built).
    auto keeps a GGUF's own blocks on a CPU running fp32 (one without AMX / AVX512-BF16, where
    bf16 is emulated); elsewhere (bf16 CPUs, not measured here; CUDA) it stays float."""
    if name not in ("none", "auto") and device.type != "cpu":
        raise ValueError(f"quantization={name!r} runs on the CPU only; use quantization='none' on {device}")
    fast = cpu_quant.is_available()
    if name == "auto":
        return "block:auto" if fast and device.type == "cpu" and dtype == torch.float32 else "none"
    if name in ("int8", "int4") and fast:
        return f"block:{name}"
    return name


def available_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 8 << 30


def _generation_config(model_dir: Path) -> GenerationConfig | None:
    """The model's generation_config.json (Llama 3's several EOS ids live there), None without one."""
    if not (model_dir / "generation_config.json").is_file():
        return None
    return GenerationConfig.from_pretrained(model_dir)


class ModelRunner:
    def __init__(self, config: EngineConfig):
        self.config = config
        self.device = pick_device(config.device)
        self.dtype = pick_dtype(config.dtype, self.device)
        self.quantization = pick_quantization(config.quantization, self.device, self.dtype)
        if self.device.type == "cpu":
            torch.set_num_threads(config.num_threads or os.cpu_count() or 1)
        self.model_dir = resolve_model_dir(config.model, config.cache_dir)
        try:
            self.hf_config = AutoConfig.from_pretrained(self.model_dir)
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        except (OSError, ValueError) as exc:
            raise ValueError(f"could not load the model config / tokenizer from {self.model_dir}: {exc}") from exc
        self.generation_config = _generation_config(self.model_dir)  # its EOS ids stop requests too
        self.family = registry.lookup(self.hf_config)
        self.arch = self.family.build_arch(self.hf_config)
        self.context_length = config.context_length or self.arch.max_position_embeddings
        # long-rope: sequences past this many tokens take the long factors (0: never, or no long-rope)
        self.rope_switch_len = self.arch.rope_switch_len if self.arch.rope_switch_len < self.context_length else 0
        self.model = self._load_model()
        self.num_slots = self._pool_slots()
        self.pool = KVPool(self.arch.num_layers, self.num_slots, self.arch.num_kv_heads,
                           self.arch.head_dim, self.dtype, self.device)
        self.backend = get_backend(self.device, config.attention_backend)
        self.ops = get_layer_ops(self.backend)
        if not config.skip_warmup:
            with torch.inference_mode():
                self.model.warm_up(max(config.chunked_prefill_size, config.max_running_requests),
                                   config.max_running_requests)

    def _load_model(self) -> torch.nn.Module:
        with torch.device("meta"):
            model = self.family.model_class(self.arch, self.hf_config, max_pos=1)
        model = model.to_empty(device="cpu")
        state = load_state_dict(self.model_dir)
        model.load_hf_state_dict(state)
        # Rotary tables are buffers, not weights: recompute them for the real context length.
        model.set_rope(self.hf_config, self.context_length)
        # Quantize from the loaded float weights, before any cast to bf16 (QuantLinear keeps no
        # float parameters, so the cast below leaves it alone).
        blocks = load_blocks(self.model_dir) if self.quantization.startswith("block:") else {}
        swapped = model.quantize(self.quantization, blocks)
        model = model.to(device=self.device, dtype=self.dtype).eval()
        model.prepack()
        self.kernels = {"cpu": cpu_quant.cpu_kind() if self.device.type == "cpu" else str(self.device),
                        "dtype": str(self.dtype).removeprefix("torch."),
                        "quantization": f"{self.config.quantization} -> {self.quantization}",
                        "linears": "; ".join(swapped) or "float",
                        "quant_kernel": cpu_quant.kernel_path() if self.quantization.startswith("block:") else "-"}
        log.info("model loaded: %s", ", ".join(f"{k} {v}" for k, v in self.kernels.items()))
        return model

    def _pool_slots(self) -> int:
        c = self.config
        per_token = KVPool.bytes_per_token(self.arch.num_layers, self.arch.num_kv_heads, self.arch.head_dim, self.dtype)
        slots = c.max_total_tokens or int(available_memory(self.device) * c.mem_fraction_static // per_token)
        slots = min(slots, c.max_running_requests * self.context_length)
        return (slots // c.page_size + 1) * c.page_size  # + the reserved padding page

    @torch.inference_mode()
    def forward(self, batch: ScheduledBatch, slot_table: torch.Tensor) -> torch.Tensor:
        """Run one forward; returns logits [len(batch.logit_rows), V] (model dtype) for the rows asked."""
        reqs, starts, lens = batch.reqs, batch.starts, batch.extend_lens
        ids: list[int] = []
        for req, s, n in zip(reqs, starts, lens):
            ids.extend(req.token_ids(s, s + n))
        dev = self.device
        start_t = torch.tensor(starts, dtype=torch.int64)
        len_t = torch.tensor(lens, dtype=torch.int64)
        positions = torch.repeat_interleave(start_t - (torch.cumsum(len_t, 0) - len_t), len_t) + torch.arange(len(ids))
        meta = AttnMeta(
            req_to_slot=slot_table, req_rows=torch.tensor([r.row for r in reqs], dtype=torch.int64, device=dev),
            prefix_lens=start_t.to(dev), extend_lens=len_t.to(dev), out_slots=batch.out_slots.to(dev),
            max_extend=max(lens), max_seq=max(s + n for s, n in zip(starts, lens)), is_decode=batch.is_decode)
        ctx = ForwardContext(meta, self.pool.k, self.pool.v, self.backend, self.ops)
        if self.rope_switch_len and any(r.rope_long for r in reqs):
            ctx.rope_long = torch.repeat_interleave(torch.tensor([r.rope_long for r in reqs]), len_t).to(dev)
        hidden = self.model(torch.tensor(ids, dtype=torch.int64, device=dev), positions.to(dev), ctx)
        if not batch.logit_rows:  # a chunk or shared prefix that no request samples from yet
            return hidden.new_empty(0, self.arch.vocab_size).cpu()
        rows = torch.tensor(batch.logit_rows, dtype=torch.int64, device=dev)
        return self.model.compute_logits(hidden.index_select(0, rows)).cpu()
