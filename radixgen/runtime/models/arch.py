"""ModelArch: the shape and the switches of a decoder, read from a transformers config by each
family's builder (see registry.py). The shared layers read only this, never the HF config."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

FULL_ROPE = "full_attention"    # rotary table names: global layers, and
LOCAL_ROPE = "sliding_attention"  # Gemma 3's sliding layers, which have their own base


@dataclass(frozen=True)
class ModelArch:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    qkv_bias: bool
    tie_word_embeddings: bool
    max_position_embeddings: int
    qk_norm: bool = False            # per-head RMSNorm of q and k before rotary (Qwen3, Gemma 3)
    attn_scale: float | None = None  # softmax scale; None = 1 / sqrt(head_dim)
    hidden_act: str = "silu"         # of the gated MLP: "silu" or "gelu_tanh" (GeGLU)
    embed_scale: float = 1.0         # embeddings times this (Gemma: sqrt(hidden_size))
    norm_offset: float = 0.0         # RMSNorm weights stored as w, applied as (offset + w) (Gemma: 1)
    layer_windows: tuple[int, ...] = ()  # sliding window per layer, 0 = full attention; () = all full
    layer_ropes: tuple[str, ...] = ()    # rotary table per layer (FULL_ROPE / LOCAL_ROPE); () = all full
    attn_softcap: float = 0.0        # attention scores soft-capped at this (Gemma 2); 0 = off
    rope_switch_len: int = 0         # long-rope: sequences longer than this take the long factors

    def window(self, layer_id: int) -> int:
        return self.layer_windows[layer_id] if self.layer_windows else 0

    def rope(self, layer_id: int) -> str:
        return self.layer_ropes[layer_id] if self.layer_ropes else FULL_ROPE

    @property
    def max_window(self) -> int:
        return max(self.layer_windows, default=0)


def base_arch(config: Any, **overrides: Any) -> ModelArch:
    """The fields every Llama-like config spells the same way; a family's builder overrides the rest."""
    heads = config.num_attention_heads
    fields: dict[str, Any] = dict(
        vocab_size=config.vocab_size, hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size, num_layers=config.num_hidden_layers,
        num_heads=heads, num_kv_heads=getattr(config, "num_key_value_heads", None) or heads,
        head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
        rms_norm_eps=config.rms_norm_eps, qkv_bias=bool(getattr(config, "attention_bias", False)),
        tie_word_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
        max_position_embeddings=config.max_position_embeddings)
    fields.update(overrides)
    return ModelArch(**fields)


def refuse(config: Any, feature: str) -> None:
    """Raise the loader's error for a feature of this config that is not built."""
    raise ValueError(f"{config.model_type}: {feature} is not supported by radixgen; "
                     "refusing to load rather than run it wrongly")


def replace(arch: ModelArch, **changes: Any) -> ModelArch:
    return dataclasses.replace(arch, **changes)


def layer_windows(config: Any) -> tuple[int, ...]:
    """Sliding window per layer (0 = full): layers marked "sliding_attention" in config.layer_types,
    or every layer when the config has a sliding_window and no layer_types (Mistral, Phi-3)."""
    window = getattr(config, "sliding_window", None) or 0
    types = getattr(config, "layer_types", None)
    if not window:
        return ()
    if types is None:
        return (int(window),) * config.num_hidden_layers
    return tuple(int(window) if t == LOCAL_ROPE else 0 for t in types)
