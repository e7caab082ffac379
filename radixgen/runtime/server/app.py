"""The FastAPI app and `main(argv)`: parse flags, load the model, serve with uvicorn until SIGTERM.

The model runs on the engine's own thread; the event loop only parses, tokenizes and streams, so
/health answers at once while the engine is busy. On SIGTERM uvicorn stops accepting, lets running
requests finish for `--graceful-timeout-s`, then cancels the rest (which aborts them in the engine,
freeing their KV); the engine is shut down last.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from importlib.metadata import version
from typing import AsyncIterator, Callable

import uvicorn
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from radixgen.runtime.engine import Engine

from .args import ServerConfig, parse_args
from .dp import run_dp
from .errors import install_error_handlers
from .logs import setup_logging
from .metrics import ServerMetrics
from .middleware import AccessLogMiddleware, APIKeyMiddleware, BodyLimitMiddleware
from .native import router as native_router
from .openai_routes import router as openai_router
from .state import ServerState

log = logging.getLogger("radixgen.server")
ENGINE_SHUTDOWN_TIMEOUT_S = 15.0


def _lifespan(engine: Engine, owns_engine: bool) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        # uvicorn gets here after its graceful period, with every request finished or cancelled
        # (and so aborted); after it, uvicorn re-raises SIGTERM, so this is the last chance.
        if owns_engine:
            try:  # bounded: a wedged engine thread must not keep a stopping server alive forever
                await asyncio.wait_for(run_in_threadpool(engine.shutdown), ENGINE_SHUTDOWN_TIMEOUT_S)
                log.info("engine stopped")
            except asyncio.TimeoutError:
                log.error("the engine did not stop in time; exiting without it")
    return lifespan


def create_app(engine: Engine, config: ServerConfig | None = None, owns_engine: bool = False) -> FastAPI:
    """An app serving `engine`. With owns_engine, the app shuts the engine down when it stops."""
    config = config or ServerConfig()
    app = FastAPI(title="radixgen", version=version("radixgen"), lifespan=_lifespan(engine, owns_engine))
    metrics = ServerMetrics(engine.get_stats)
    app.state.server = ServerState(engine, config, metrics)
    app.include_router(native_router)
    app.include_router(openai_router)
    install_error_handlers(app)
    known_paths = {route.path for route in [*native_router.routes, *openai_router.routes]}
    # add_middleware wraps: the last one added runs first. Log everything (401s too), then refuse
    # unauthenticated clients before their bodies are read, then bound the body.
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_body_bytes)
    app.add_middleware(APIKeyMiddleware, api_key=config.api_key)
    app.add_middleware(AccessLogMiddleware, metrics=metrics, known_paths=known_paths)
    return app


def serve(engine: Engine, config: ServerConfig) -> None:
    """Blocks until the server stops (SIGINT / SIGTERM), then shuts `engine` down.
    Like uvicorn, ends by re-raising the signal, so the exit status says what stopped the server."""
    app = create_app(engine, config, owns_engine=True)
    uv_config = uvicorn.Config(app, host=config.host, port=config.port, log_config=None, access_log=False,
                               log_level=config.log_level, timeout_graceful_shutdown=config.graceful_timeout_s)
    log.info("serving", extra={"fields": {"url": f"http://{config.host}:{config.port}",
                                          "model": engine.model_path, "auth": config.api_key is not None,
                                          **engine.core.runner.kernels}})
    _Server(uv_config, engine).run()


class _Server(uvicorn.Server):
    """uvicorn's server, which on SIGTERM / SIGINT also turns away the requests still waiting in the
    engine (503: retry on another replica) while the running ones get the graceful period."""

    def __init__(self, config: uvicorn.Config, engine: Engine):
        super().__init__(config)
        self.engine = engine

    def handle_exit(self, sig: int, frame: object) -> None:
        if not self.should_exit:
            self.engine.abort_waiting("the server is shutting down; retry the request")
        super().handle_exit(sig, frame)


def main(argv: list[str] | None = None) -> None:
    """`radixgen serve [flags]`: the entry point `radixgen/cli.py` calls with the flags after `serve`."""
    config, engine_config = parse_args(sys.argv[1:] if argv is None else argv)
    setup_logging(config.log_level, config.log_format)
    if config.dp > 1:  # workers behind sglang-router; this process loads no model
        return run_dp(config, engine_config)
    log.info("loading the model", extra={"fields": {"engine": dataclasses.asdict(engine_config)}})
    engine = Engine(**dataclasses.asdict(engine_config))
    try:
        serve(engine, config)
    finally:
        engine.shutdown()  # a no-op after a normal stop; needed when uvicorn fails to start
