"""SGLang's frontend language on radixgen: `import radixgen as sgl` and an SGLang program runs.

    @function
    def qa(s, question):
        s += system("You are terse.")
        s += user(question)
        s += assistant(gen("answer", max_tokens=32))

    set_default_backend(radixgen.Engine())     # or RuntimeEndpoint("http://localhost:30000")
    print(qa.run(question="Why is the sky blue?")["answer"])
"""
from .api import (assistant, assistant_begin, assistant_end, gen, gen_int, gen_string, image, select,
                  separate_reasoning, system, system_begin, system_end, user, user_begin, user_end, video)
from .backend import Backend, EngineBackend, flush_cache, get_default_backend, get_server_info, set_default_backend
from .choices import (ChoicesDecision, ChoicesSamplingMethod, greedy_token_selection, token_length_normalized,
                      unconditional_likelihood_normalized)
from .global_config import global_config
from .interpreter import ProgramState
from .program import Program, function
from .runtime import Runtime
from .runtime_endpoint import RuntimeEndpoint
from .state_group import ProgramStateGroup

__all__ = [
    "function", "Program", "ProgramState", "ProgramStateGroup",
    "gen", "gen_int", "gen_string", "select", "image", "video", "separate_reasoning",
    "system", "user", "assistant", "system_begin", "system_end", "user_begin", "user_end",
    "assistant_begin", "assistant_end",
    "Backend", "EngineBackend", "RuntimeEndpoint", "set_default_backend", "get_default_backend", "flush_cache",
    "get_server_info", "global_config", "Runtime",
    "ChoicesDecision", "ChoicesSamplingMethod", "token_length_normalized", "greedy_token_selection",
    "unconditional_likelihood_normalized",
]
