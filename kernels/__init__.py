"""Attention over the paged KV pool and grammar-mask application: Triton kernels (CUDA) beside
plain-torch references with the same signatures (CPU, and the tests' ground truth)."""
from .meta import AttnMeta
from . import reference

__all__ = ["AttnMeta", "reference"]
