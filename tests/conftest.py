"""Shared fixtures. The real bundled model is loaded once per session (float32 for exact parity)."""
from __future__ import annotations

import pytest
import torch

import radixgen


@pytest.fixture(scope="session")
def engine_fp32():
    """The bundled SmolLM2 in float32 with the radix cache; tests must leave it idle."""
    with radixgen.Engine(dtype="float32", max_total_tokens=30000) as engine:
        yield engine


@pytest.fixture(scope="session")
def model_dir(engine_fp32) -> str:
    return engine_fp32.model_path


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
