"""The HTTP server: OpenAI's API and SGLang's native API over one Engine (FastAPI + uvicorn).

    radixgen serve --port 30000 [--api-key KEY] [engine flags]
    python -m radixgen.runtime.server --port 30000 ...
"""
from .app import create_app, main, serve
from .args import ServerConfig, build_parser, parse_args

__all__ = ["ServerConfig", "build_parser", "create_app", "main", "parse_args", "serve"]
