"""The objects every route needs, held on `app.state.server`."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from radixgen.runtime.engine import Engine

from .args import ServerConfig
from .errors import APIError
from .metrics import ServerMetrics


@dataclass
class ServerState:
    engine: Engine
    config: ServerConfig
    metrics: ServerMetrics
    started_at: int = field(default_factory=lambda: int(time.time()))

    @property
    def model_name(self) -> str:
        """The id /v1/models lists: --served-model-name, else the model directory's name."""
        return self.config.served_model_name or os.path.basename(self.engine.model_path.rstrip("/"))

    @property
    def context_length(self) -> int:
        return self.engine.core.context_length

    def check_model(self, name: str | None) -> None:
        """OpenAI clients must name a model; accept ours under any of its names, refuse the rest."""
        accepted = {self.model_name, self.engine.model_path, self.engine.config.model, "default"}
        if name and name not in accepted:
            raise APIError(404, f"the model {name!r} does not exist; this server serves {self.model_name!r}",
                           param="model", code="model_not_found")

    async def stats(self) -> dict[str, Any]:
        """Engine counters and KV pool state. `get_stats` waits for the engine's current step to end,
        so it runs on a worker thread, never on the event loop."""
        return await run_in_threadpool(self.engine.get_stats)


def get_state(request: Request) -> ServerState:
    return request.app.state.server
