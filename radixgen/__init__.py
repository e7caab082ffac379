"""radixgen: a structured-generation runtime (paged continuous batching, radix-tree KV cache,
constrained decoding, SGLang's frontend language, an OpenAI / SGLang-native HTTP server)."""
from radixgen.runtime.config import EngineConfig
from radixgen.runtime.engine import Engine
from radixgen.runtime.llm import LLM, CompletionOutput, RequestOutput
from radixgen.runtime.sampling_params import SamplingParams

__all__ = ["Engine", "EngineConfig", "LLM", "CompletionOutput", "RequestOutput", "SamplingParams"]
__version__ = "0.1.0"
