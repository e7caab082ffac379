"""Fixtures for the kernel tests.

Without a GPU the Triton kernels run on the CPU under Triton's interpreter, which `triton.jit`
picks when the kernels are decorated (at import), so TRITON_INTERPRET is set here, before any test
module imports them, and `triton_kernels` re-imports them if something imported them earlier.
"""
from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    os.environ["TRITON_INTERPRET"] = "1"


@pytest.fixture(scope="session")
def device() -> torch.device:
    """Where the Triton kernels run: the GPU if there is one, else the CPU (interpreted)."""
    return torch.device("cuda" if HAS_CUDA else "cpu")


@pytest.fixture(scope="session")
def triton_kernels() -> ModuleType:
    pytest.importorskip("triton")
    from radixgen.kernels import triton_attention, triton_mask
    if not HAS_CUDA and type(triton_attention._extend_kernel).__name__ != "InterpretedFunction":
        importlib.reload(triton_mask)
        triton_attention = importlib.reload(triton_attention)
    return triton_attention


@pytest.fixture()
def poison(monkeypatch: pytest.MonkeyPatch):
    """Makes a module's `_alloc` hand out NaN-filled buffers, so unwritten elements show up."""
    def apply(module: ModuleType) -> None:
        real = module._alloc
        monkeypatch.setattr(module, "_alloc", lambda *shape, **kw: real(*shape, **kw).fill_(float("nan")))
    return apply
