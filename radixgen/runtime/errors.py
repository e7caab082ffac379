"""The engine's errors beside ValueError (bad input, the caller's fault): what a server maps to 503."""
from __future__ import annotations


class EngineUnavailableError(RuntimeError):
    """The engine loop is not running (it stopped after a fatal error, or the engine shut down)."""


class EngineOverloadedError(RuntimeError):
    """The waiting queue is full (EngineConfig.max_queued_requests): retry later."""

    retry_after_s = 1


class RankFailedError(RuntimeError):
    """A tensor-parallel rank died or stopped answering: the engine cannot go on (its ranks' KV
    pools and collectives are out of step), so the engine loop stops with this message."""
