"""radixgen: a structured-generation runtime (paged continuous batching, radix-tree KV cache,
constrained decoding, SGLang's frontend language, an OpenAI / SGLang-native HTTP server).

`import radixgen as sgl` runs SGLang frontend programs; `from radixgen import LLM, SamplingParams`
runs vLLM's offline example.
"""
from radixgen.frontend import *  # noqa: F401,F403  (the SGLang language: function, gen, select, ...)
from radixgen.frontend import __all__ as _frontend_all
from radixgen.runtime.config import EngineConfig
from radixgen.runtime.engine import Engine
from radixgen.runtime.llm import LLM, CompletionOutput, RequestOutput
from radixgen.runtime.sampling_params import SamplingParams

__all__ = ["Engine", "EngineConfig", "LLM", "CompletionOutput", "RequestOutput", "SamplingParams", *_frontend_all]
__version__ = "0.1.0"
