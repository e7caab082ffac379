"""The FastAPI app and `main(argv)`: parse flags, load the model, serve with uvicorn until SIGTERM.

The model runs on the engine's own thread; the event loop only parses, tokenizes and streams, so
/health answers at once while the engine is busy. On SIGTERM uvicorn stops accepting, lets running
requests finish for `--graceful-timeout-s`, then cancels the rest (which aborts them in the engine,
freeing their KV); the engine is shut down last.
"""
from __future__ import annotations

import logging
import sys
from importlib.metadata import version

import uvicorn
from fastapi import FastAPI

from radixgen.runtime.engine import Engine

from .args import ServerConfig, parse_args
from .errors import install_error_handlers
from .logs import setup_logging
from .metrics import ServerMetrics
from .middleware import AccessLogMiddleware, APIKeyMiddleware, BodyLimitMiddleware
from .native import router as native_router
from .openai_routes import router as openai_router
from .state import ServerState

log = logging.getLogger("radixgen.server")


def create_app(engine: Engine, config: ServerConfig | None = None) -> FastAPI:
    """An app serving `engine`; the caller owns the engine (and shuts it down)."""
    config = config or ServerConfig()
    app = FastAPI(title="radixgen", version=version("radixgen"))
    metrics = ServerMetrics(engine.get_stats)
    app.state.server = ServerState(engine, config, metrics)
    app.include_router(native_router)
    app.include_router(openai_router)
    install_error_handlers(app)
    known_paths = {getattr(route, "path", "") for route in app.routes}
    # add_middleware wraps: the last one added runs first. Order: log everything (401s and 413s
    # too), then refuse unauthenticated clients before reading their bodies, then bound the body.
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_body_bytes)
    app.add_middleware(APIKeyMiddleware, api_key=config.api_key)
    app.add_middleware(AccessLogMiddleware, metrics=metrics, known_paths=known_paths)
    return app


def serve(engine: Engine, config: ServerConfig) -> None:
    """Blocks until the server stops (SIGINT / SIGTERM)."""
    app = create_app(engine, config)
    uv_config = uvicorn.Config(app, host=config.host, port=config.port, log_config=None, access_log=False,
                               log_level=config.log_level, timeout_graceful_shutdown=config.graceful_timeout_s)
    log.info("serving", extra={"fields": {"url": f"http://{config.host}:{config.port}",
                                          "model": engine.model_path, "auth": config.api_key is not None}})
    uvicorn.Server(uv_config).run()


def main(argv: list[str] | None = None) -> None:
    """`radixgen serve [flags]`: the entry point `radixgen/cli.py` calls with the flags after `serve`."""
    config, engine_kwargs = parse_args(sys.argv[1:] if argv is None else argv)
    setup_logging(config.log_level, config.log_format)
    log.info("loading the model", extra={"fields": {"engine": engine_kwargs}})
    engine = Engine(**engine_kwargs)
    try:
        serve(engine, config)
    finally:
        engine.shutdown()  # aborts whatever uvicorn's graceful period left running
        log.info("stopped")
