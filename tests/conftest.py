"""Shared fixtures. The real bundled model is loaded once per session (float32 for exact parity);
a tiny random Llama (same tokenizer) serves the tests that need many requests fast."""
from __future__ import annotations

import os

import pytest
import torch

import radixgen
from radixgen.runtime.config import EngineConfig
from radixgen.runtime.model_loader import resolve_model_dir
from radixgen.runtime.server.launch import ServerProcess, launch_server


@pytest.fixture(scope="session")
def bundled_dir() -> str:
    """The bundled SmolLM2 as a HF directory (converted from its GGUF once, then cached)."""
    return str(resolve_model_dir(None, EngineConfig().cache_dir))


# The real model loads 2-3 times a run: once as the defaults pick on this CPU (bf16 with AMX or
# AVX512-BF16; float32 elsewhere, with the GGUF's own quantized blocks), shared by every test that
# does not care, once as the float model for the parity (float32) or bf16 tests, and once in the
# session's server process.
ENGINE_KW = {"max_total_tokens": 30000}


@pytest.fixture(scope="session")
def engine():
    """The bundled SmolLM2 (dtype auto) with the radix cache; tests must leave it idle."""
    with radixgen.Engine(**ENGINE_KW) as eng:
        yield eng


def _engine_in(dtype: torch.dtype, shared: radixgen.Engine):
    """The float model in `dtype` (the shared engine where it is that: not where quantization auto
    swapped in the GGUF's blocks, as it does on CPUs running fp32)."""
    if shared.core.runner.dtype == dtype and shared.core.runner.quantization == "none":
        yield shared
        return
    with radixgen.Engine(dtype=str(dtype).removeprefix("torch."), quantization="none", **ENGINE_KW) as eng:
        yield eng


@pytest.fixture(scope="session")
def engine_fp32(engine):
    """float32, for exact parity with transformers."""
    yield from _engine_in(torch.float32, engine)


@pytest.fixture(scope="session")
def engine_bf16(engine):
    """bfloat16, the dtype of AMX / AVX512-BF16 machines (emulated, slowly, elsewhere)."""
    yield from _engine_in(torch.bfloat16, engine)


API_KEY = "test-key"
MAX_BODY_BYTES = 256 * 1024


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> ServerProcess:
    """One real server process for the session (`python -m radixgen.runtime.server`, dtype auto, an
    API key and a small body limit), used by the server tests and the frontend's HTTP backend."""
    srv = launch_server(["--max-total-tokens", "20000", "--api-key", API_KEY, "--max-body-bytes", str(MAX_BODY_BYTES)],
                        tmp_path_factory.mktemp("server") / "server.log", timeout=300)
    srv.api_key, srv.max_body_bytes = API_KEY, MAX_BODY_BYTES
    yield srv
    srv.stop()


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


# Fixtures that load the real model: a test using one is `slow` (`make test-fast` leaves it out).
MODEL_FIXTURES = {"engine", "engine_fp32", "engine_bf16", "server", "backend", "http_backend", "engine_backend"}


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip)


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
