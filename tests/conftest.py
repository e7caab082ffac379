"""Shared fixtures. The real bundled model is loaded once per session (float32 for exact parity);
a tiny random Llama (same tokenizer) serves the tests that need many requests fast."""
from __future__ import annotations

import os

import pytest
import torch

import radixgen
from radixgen.runtime.config import EngineConfig
from radixgen.runtime.model_loader import resolve_model_dir


@pytest.fixture(scope="session")
def bundled_dir() -> str:
    """The bundled SmolLM2 as a HF directory (converted from its GGUF once, then cached)."""
    return str(resolve_model_dir(None, EngineConfig().cache_dir))


@pytest.fixture(scope="session")
def engine_fp32():
    """The bundled SmolLM2 in float32 with the radix cache; tests must leave it idle."""
    with radixgen.Engine(dtype="float32", max_total_tokens=30000) as engine:
        yield engine


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory, bundled_dir) -> str:
    """A 2-layer random Llama with SmolLM2's tokenizer; large init so greedy choices are not near-ties."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    path = tmp_path_factory.mktemp("tiny-llama")
    config = LlamaConfig(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         tie_word_embeddings=True, initializer_range=0.3, eos_token_id=2, bos_token_id=1)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(bundled_dir).save_pretrained(path)
    return str(path)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
