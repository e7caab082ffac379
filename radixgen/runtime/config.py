"""Engine configuration: one frozen dataclass, validated once, built from keyword arguments or CLI flags."""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
from dataclasses import dataclass, field
from typing import Any

DTYPES = ("auto", "float32", "bfloat16", "float16")
POLICIES = ("lpm", "fcfs")
QUANTIZATIONS = ("none", "auto", "int8", "int4", "int8-dynamic")
ATTENTION_BACKENDS = ("auto", "reference", "cpu", "triton")
SAMPLING_DEFAULTS = ("model", "openai")
KV_CACHE_DTYPES = ("auto", "float32", "bfloat16")


@dataclass(frozen=True)
class EngineConfig:
    model: str | None = None              # HF dir, .gguf file, or None for the bundled SmolLM2-135M-Instruct
    dtype: str = "auto"                   # auto: bf16 where the CPU has AMX/AVX512-BF16 or on CUDA, else fp32
    quantization: str = "auto"            # auto: a GGUF's own blocks where the CPU runs fp32 (no AMX / AVX512-BF16), else float | none | int8 | int4 | int8-dynamic (models/block_quant.py)
    kv_cache_dtype: str = "auto"          # auto: bf16 under our block-quantized linears on the CPU (as llama.cpp keeps f16), else the model dtype
    device: str = "auto"                  # auto: cuda if available, else cpu
    page_size: int = 1                    # KV slots per page
    max_total_tokens: int | None = None   # KV pool size in tokens; None: mem_fraction_static of free memory
    mem_fraction_static: float = 0.25     # share of available memory for the KV pool when max_total_tokens is None
    max_running_requests: int = 256
    chunked_prefill_size: int = 2048      # token budget of one prefill batch; longer prompts are chunked
    schedule_policy: str = "lpm"          # lpm: longest cached prefix first; fcfs: arrival order
    disable_radix_cache: bool = False
    context_length: int | None = None     # None: the model's max_position_embeddings
    attention_backend: str = "auto"
    num_threads: int | None = None        # torch intra-op threads; None: the machine's core count
    tp_size: int = 1                      # tensor-parallel ranks (processes) on this host, over gloo (runtime/tp/)
    random_seed: int = 0
    cache_dir: str = field(default_factory=lambda: os.path.join(os.path.expanduser("~"), ".cache", "radixgen"))
    enable_jump_forward: bool = True
    grammar_cache_size: int = 128
    grammar_compile_timeout_s: float = 10.0
    grammar_compile_memory_mb: int | None = 2048  # compiles run in a child process capped at this; 0 / None: in-process
    grammar_json_finishing: bool = True  # JSON schemas: finishing defaults (16+16 digits, exponent 3, no undeclared keys, looping strings closed past 128 bytes; JsonOptions)
    skip_warmup: bool = False             # skip building the CPU matmul kernels of every batch shape at start
    max_queued_requests: int | None = None  # waiting requests beyond this are refused (503); None: no bound
    # model: a request's unset temperature / top_p / top_k / min_p / repetition_penalty come from the
    # model's generation_config.json (as SGLang's --sampling-defaults model, vLLM's --generation-config
    # auto); openai: the API's own defaults (temperature 1, top_p 1, ...)
    sampling_defaults: str = "model"

    def __post_init__(self) -> None:
        _check_choice("dtype", self.dtype, DTYPES)
        _check_choice("quantization", self.quantization, QUANTIZATIONS)
        _check_choice("schedule_policy", self.schedule_policy, POLICIES)
        _check_choice("attention_backend", self.attention_backend, ATTENTION_BACKENDS)
        _check_choice("sampling_defaults", self.sampling_defaults, SAMPLING_DEFAULTS)
        _check_choice("kv_cache_dtype", self.kv_cache_dtype, KV_CACHE_DTYPES)
        if self.kv_cache_dtype != "auto" and self.device.startswith("cuda"):
            raise ValueError("kv_cache_dtype other than 'auto' is built for the CPU kernels only; "
                             "on CUDA the KV cache takes the model dtype")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}")
        for name in ("page_size", "max_running_requests", "chunked_prefill_size", "tp_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.tp_size > 1 and self.quantization not in ("none", "auto"):
            raise ValueError(f"quantization={self.quantization!r} with tp_size > 1 is not built: "
                             "use quantization='none' or tp_size=1")
        if self.tp_size > 1 and self.device.startswith("cuda"):
            raise ValueError("tp_size > 1 runs over gloo on CPUs only (NCCL on GPUs is not built): "
                             "use device='cpu' or tp_size=1")
        if self.max_total_tokens is not None and self.max_total_tokens < 16:
            raise ValueError(f"max_total_tokens must be >= 16, got {self.max_total_tokens}")
        if not 0.0 < self.mem_fraction_static < 0.95:
            raise ValueError(f"mem_fraction_static must be in (0, 0.95), got {self.mem_fraction_static}")
        if self.max_queued_requests is not None and self.max_queued_requests < 1:
            raise ValueError(f"max_queued_requests must be >= 1 or None, got {self.max_queued_requests}")
        if self.context_length is not None and self.context_length < 1:
            raise ValueError(f"context_length must be positive, got {self.context_length}")

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> "EngineConfig":
        """Build from keyword arguments; an unknown key is an error naming the closest valid one."""
        aliases = {"model_path": "model", "max_model_len": "context_length", "max_num_seqs": "max_running_requests",
                   "tensor_parallel_size": "tp_size"}
        names = {f.name for f in dataclasses.fields(cls)}
        clean: dict[str, Any] = {}
        for key, value in kwargs.items():
            if key == "enable_prefix_caching":  # vLLM's switch, inverted
                clean["disable_radix_cache"] = not value
                continue
            key = aliases.get(key, key)
            if key not in names:
                hint = difflib.get_close_matches(key, sorted(names), n=1)
                raise ValueError(f"unknown engine option {key!r}"
                                 + (f"; did you mean {hint[0]!r}?" if hint else ""))
            clean[key] = value
        return cls(**clean)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


# SGLang's and vLLM's spellings of some flags, accepted beside ours
CLI_ALIASES = {"tp_size": ("--tp", "--tensor-parallel-size")}


def add_cli_args(parser: "argparse.ArgumentParser") -> None:
    """One --flag per EngineConfig field, typed and defaulted from the dataclass itself."""
    for f in dataclasses.fields(EngineConfig):
        flags = ["--" + f.name.replace("_", "-"), *CLI_ALIASES.get(f.name, ())]
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.type in ("bool", bool):
            parser.add_argument(*flags, action=argparse.BooleanOptionalAction, default=default)
        else:
            kind = {"int": int, "float": float, "int | None": int}.get(str(f.type), str)
            parser.add_argument(*flags, dest=f.name, type=kind, default=default, metavar=f.name.upper())


def from_cli_args(ns: "argparse.Namespace") -> EngineConfig:
    """The EngineConfig described by parsed flags (fields left at None keep the dataclass default)."""
    kwargs = {f.name: getattr(ns, f.name) for f in dataclasses.fields(EngineConfig)
              if getattr(ns, f.name, None) is not None}
    return EngineConfig.from_kwargs(**kwargs)
