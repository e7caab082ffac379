"""The model registry: a transformers config's `model_type` -> the class that runs it and the builder
that reads its ModelArch (refusing, with the feature's name, what that family does not support).

The runner asks `lookup(config)`, never names a family. Adding one = its own file under models/
(an arch builder, and a model class if the Llama one does not fit) + one line in FAMILIES.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from . import gemma2, gemma3, llama, mistral, phi3, qwen
from .arch import ModelArch


@dataclass(frozen=True)
class Family:
    model_class: type[nn.Module]           # built as model_class(arch, hf_config, max_pos)
    build_arch: Callable[[Any], ModelArch]  # raises ValueError naming an unsupported feature
    # For GGUF files that lack them (transformers' GGUF reader finds no template in many):
    chat_template: str | None = None        # the family's own chat template
    stop_tokens: tuple[str, ...] = ()       # tokens that end a turn, added to the EOS ids


FAMILIES: dict[str, Family] = {
    "llama": Family(llama.LlamaForCausalLM, llama.llama_arch),
    "mistral": Family(llama.LlamaForCausalLM, mistral.mistral_arch),
    "qwen2": Family(llama.LlamaForCausalLM, qwen.qwen2_arch),
    "qwen3": Family(llama.LlamaForCausalLM, qwen.qwen3_arch),
    "phi3": Family(phi3.Phi3ForCausalLM, phi3.phi3_arch),
    "gemma3_text": Family(gemma3.Gemma3ForCausalLM, gemma3.gemma3_arch, gemma3.CHAT_TEMPLATE, gemma3.STOP_TOKENS),
    "gemma3": Family(gemma3.Gemma3ForCausalLM, gemma3.gemma3_multimodal_arch),  # refused, naming why
    "gemma2": Family(gemma2.Gemma2ForCausalLM, gemma2.gemma2_arch, gemma3.CHAT_TEMPLATE, gemma3.STOP_TOKENS),
}


def lookup(config: Any) -> Family:
    """The family of a transformers config, by its model_type; unknown types are refused by name."""
    model_type = getattr(config, "model_type", None)
    if model_type not in FAMILIES:
        raise ValueError(f"model type {model_type!r} is not supported "
                         f"(supported: {', '.join(sorted(FAMILIES))})")
    return FAMILIES[model_type]


def build_arch(config: Any) -> ModelArch:
    return lookup(config).build_arch(config)
