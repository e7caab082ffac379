"""`sgl.global_config`: SGLang's module-wide settings object, for programs that read or set it."""
from __future__ import annotations

from typing import Any

from .backend import get_default_backend, set_default_backend


class GlobalConfig:
    """The settings SGLang's GlobalConfig has that a program can reach.

    default_backend: the backend set by set_default_backend (reading it and setting it are the same
      as get_default_backend / set_default_backend).
    verbosity: 2 prints each program's final text when it ends.
    enable_precache_with_tracing: run_batch traces the programs up to their first model call and
      prefills their common prefix once before they run (program.py); False skips that.
    skip_special_tokens_in_output, spaces_between_special_tokens_in_out, enable_parallel_encoding:
      kept for programs that set them; our backends take the first two per request (SamplingParams)
      and always encode forks in parallel.
    """

    def __init__(self) -> None:
        self.verbosity = 0
        self.skip_special_tokens_in_output = True
        self.spaces_between_special_tokens_in_out = True
        self.enable_precache_with_tracing = True
        self.enable_parallel_encoding = True

    @property
    def default_backend(self) -> Any:
        return get_default_backend()

    @default_backend.setter
    def default_backend(self, backend: Any) -> None:
        set_default_backend(backend)


global_config = GlobalConfig()
