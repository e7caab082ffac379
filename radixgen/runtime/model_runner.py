"""ModelRunner: loads the model and the KV pool, packs a scheduled batch into flat tensors, runs it.

One forward covers every request of a batch: their new tokens are concatenated ([T]), and each
request's KV is found through its slot-table row (AttnMeta). Logits are computed only for the rows
that need them: the last token of each request that reaches its end, and prompt-logprob positions.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import torch
from transformers import AutoConfig, AutoTokenizer, GenerationConfig

from radixgen.kernels import AttnMeta, cpu_quant, get_backend, get_layer_ops

from .config import EngineConfig
from .memory_pool import KVPool
from .gguf_blocks import has_blocks, load_blocks
from .model_loader import load_state_dict, resolve_model_dir
from .models import registry
from .models.layers import ForwardContext
from .scheduler import ScheduledBatch
from .tp.comm import TPComm
from .tp.leader import Leader
from .tp.shard import check_divisible, local_arch, parallelize, shard_weights
from .tp.step import StepInputs

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


def pick_quantization(name: str, device: torch.device, dtype: torch.dtype, tp_size: int, gguf: bool) -> str:
    """The config's quantization resolved to what the model's quantize() takes: "none"; "block:MODE"
    (auto / int8 / int4 over our block kernels, models/block_quant.py); or a PyTorch-kernel mode
    (models/quant.py: int8-dynamic, and int8 / int4 where our kernel library could not be built).
    auto (the default) keeps a GGUF's own blocks (`gguf`: the model has them) on a CPU running
    fp32 (one without AMX / AVX512-BF16, where bf16 is emulated); elsewhere (HF checkpoints; bf16
    CPUs, where AMX bf16 tiles were tuned; CUDA; tensor-parallel ranks) it stays float."""
    if name not in ("none", "auto") and device.type != "cpu":
        raise ValueError(f"quantization={name!r} runs on the CPU only; use quantization='none' on {device}")
    fast = cpu_quant.is_available()
    if name == "auto":
        ok = gguf and fast and device.type == "cpu" and dtype == torch.float32 and tp_size == 1
        return "block:auto" if ok else "none"
    if name in ("int8", "int4") and fast:
        return f"block:{name}"
    return name


def pick_kv_dtype(name: str, dtype: torch.dtype, quantization: str) -> torch.dtype:
    """The KV pool's dtype. auto: bf16 under our block-quantized linears on an fp32 CPU model, whose
    decode then reads half the cache bytes (after 1,000 tokens fp32 K/V were 46 MB a token beside
    the 96 MB of weight blocks; llama.cpp keeps f16); the model dtype everywhere else. The attention
    kernels read bf16 rows into fp32, so only the stored K/V are rounded."""
    if name == "auto":
        return torch.bfloat16 if quantization.startswith("block:") and dtype == torch.float32 else dtype
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[name]


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
    """Rank 0 (`comm` None) builds every step's inputs from the scheduler's batch; with tp_size > 1
    it also starts the other ranks (tp/leader.py), which build their runner with `comm` and the
    pool size rank 0 picked (`num_slots`), and run the inputs rank 0 sends (tp/worker.py)."""

    def __init__(self, config: EngineConfig, comm: TPComm | None = None, num_slots: int | None = None):
        self.config = config
        self.device = pick_device(config.device)
        self.dtype = pick_dtype(config.dtype, self.device)
        if config.tp_size > 1 and self.device.type != "cpu":
            raise ValueError(f"tp_size > 1 runs on the CPU (gloo) only; NCCL on {self.device} is not built: "
                             "pass device='cpu' or tp_size=1")
        if self.device.type == "cpu":  # the threads are split between the ranks
            torch.set_num_threads(max(1, (config.num_threads or os.cpu_count() or 1) // config.tp_size))
        self._read_model(config)
        self.quantization = pick_quantization(config.quantization, self.device, self.dtype, config.tp_size,
                                              has_blocks(self.model_dir))
        self.kv_dtype = pick_kv_dtype(config.kv_cache_dtype, self.dtype, self.quantization)
        if config.tp_size > 1:
            check_divisible(self.arch, config.tp_size)
        self.context_length = config.context_length or self.arch.max_position_embeddings
        # long-rope: sequences past this many tokens take the long factors (0: never, or no long-rope)
        self.rope_switch_len = self.arch.rope_switch_len if self.arch.rope_switch_len < self.context_length else 0
        self.num_slots = num_slots or self._pool_slots()
        self.leader: Leader | None = None
        if config.tp_size > 1 and comm is None:
            self.leader = Leader(dataclasses.replace(config, model=str(self.model_dir)), self.num_slots)
            comm = self.leader.comm
        self.comm = comm
        try:
            self._load(config)
        except BaseException:
            self.close()
            raise

    def _read_model(self, config: EngineConfig) -> None:
        """The model's directory, configs, tokenizer, family and (whole-model) arch."""
        self.model_dir = resolve_model_dir(config.model, config.cache_dir)
        try:
            self.hf_config = AutoConfig.from_pretrained(self.model_dir)
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        except (OSError, ValueError) as exc:
            raise ValueError(f"could not load the model config / tokenizer from {self.model_dir}: {exc}") from exc
        self.generation_config = _generation_config(self.model_dir)  # its EOS ids stop requests too
        self.family = registry.lookup(self.hf_config)
        self.arch = self.family.build_arch(self.hf_config)  # the whole model's (the scheduler's vocabulary)

    def _load(self, config: EngineConfig) -> None:
        """This rank's model shard and KV pool (its own KV heads), warmed up; then wait for the others."""
        self.model = self._load_model()
        kv_heads = self.arch.num_kv_heads // config.tp_size
        self.pool = KVPool(self.arch.num_layers, self.num_slots, kv_heads, self.arch.head_dim, self.kv_dtype, self.device)
        self.backend = get_backend(self.device, config.attention_backend)
        self.ops = get_layer_ops(self.backend)
        if not config.skip_warmup:
            with torch.inference_mode():
                self.model.warm_up(max(config.chunked_prefill_size, config.max_running_requests),
                                   config.max_running_requests)
        if self.leader is not None:
            self.leader.wait_loaded()

    def close(self) -> None:
        """Stop the other tensor-parallel ranks (nothing to do with tp_size 1)."""
        if self.leader is not None:
            self.leader.close()

    def _load_model(self) -> torch.nn.Module:
        comm, arch = self.comm, self.arch
        shard = None if comm is None else shard_weights(arch, comm.rank, comm.size)
        with torch.device("meta"):
            model = self.family.model_class(arch if comm is None else local_arch(arch, comm.size),
                                            self.hf_config, max_pos=1)
        model = model.to_empty(device="cpu")
        state = load_state_dict(self.model_dir)
        model.load_hf_state_dict(state, shard)
        if comm is not None:
            parallelize(model, comm)
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
                        "kv_cache": str(self.kv_dtype).removeprefix("torch."),
                        "quantization": f"{self.config.quantization} -> {self.quantization}",
                        "linears": "; ".join(swapped) or "float",
                        "quant_kernel": cpu_quant.kernel_path() if self.quantization.startswith("block:") else "-",
                        "decode_stack": "one C++ call" if getattr(model, "decode_stack", None) else "per layer",
                        "tp": "1" if self.comm is None else f"rank {self.comm.rank} of {self.comm.size} (gloo)"}
        log.info("model loaded: %s", ", ".join(f"{k} {v}" for k, v in self.kernels.items()))
        return model

    def _pool_slots(self) -> int:
        c = self.config
        # with tp_size ranks on one host, each holds 1 / tp_size of the KV heads and takes that share
        # of the memory fraction: the same token count as one rank with the whole pool
        per_token = KVPool.bytes_per_token(self.arch.num_layers, self.arch.num_kv_heads // c.tp_size,
                                           self.arch.head_dim, self.kv_dtype)
        fraction = c.mem_fraction_static / c.tp_size
        slots = c.max_total_tokens or int(available_memory(self.device) * fraction // per_token)
        slots = min(slots, c.max_running_requests * self.context_length)
        return (slots // c.page_size + 1) * c.page_size  # + the reserved padding page

    @torch.inference_mode()
    def forward(self, batch: ScheduledBatch, slot_table: torch.Tensor) -> torch.Tensor:
        """Run one forward; returns logits [len(batch.logit_rows), V] (model dtype) for the rows asked.
        With tensor parallelism, any failure is RankFailedError: the ranks are out of step after it."""
        step = self._inputs(batch, slot_table)
        if self.leader is None:
            return self.run(step)
        try:
            self.leader.send(step)
            return self.run(step)
        except Exception as exc:
            raise self.leader.failure(exc) from exc

    def _inputs(self, batch: ScheduledBatch, slot_table: torch.Tensor) -> StepInputs:
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
        rope_long = None
        if self.rope_switch_len and any(r.rope_long for r in reqs):
            rope_long = torch.repeat_interleave(torch.tensor([r.rope_long for r in reqs]), len_t).to(dev)
        return StepInputs(torch.tensor(ids, dtype=torch.int64, device=dev), positions.to(dev), meta,
                          torch.tensor(batch.logit_rows, dtype=torch.int64, device=dev), rope_long)

    def run(self, step: StepInputs) -> torch.Tensor:
        """The forward of `step` on this rank: logits [N, V] (on a rank other than 0: its [N, V / tp])."""
        ctx = ForwardContext(step.meta, self.pool.k, self.pool.v, self.backend, self.ops, rope_long=step.rope_long)
        hidden = self.model(step.ids, step.positions, ctx)
        if step.logit_rows.numel() == 0:  # a chunk or shared prefix that no request samples from yet
            return hidden.new_empty(0, self.arch.vocab_size).cpu()
        return self.model.compute_logits(hidden.index_select(0, step.logit_rows)).cpu()
