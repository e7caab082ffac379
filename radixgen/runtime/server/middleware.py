"""Plain ASGI middleware: API-key auth, a request-body size limit, an access log with metrics.

Plain ASGI rather than Starlette's BaseHTTPMiddleware, which buffers responses and hides client
disconnects from streaming endpoints: a client that goes away must reach the route so that its
request is aborted and its KV freed.
"""
from __future__ import annotations

import json
import logging
import secrets
import time
from typing import Any, Awaitable, Callable

from .errors import error_body
from .metrics import ServerMetrics

ASGIApp = Callable[[dict, Callable, Callable], Awaitable[None]]
log = logging.getLogger("radixgen.server.access")
OPEN_PATHS = frozenset({"/health"})  # what a load balancer probes without credentials


async def send_json_error(send: Callable, status: int, message: str, headers: list | None = None) -> None:
    body = json.dumps(error_body(status, message)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class APIKeyMiddleware:
    """Every route but /health needs `Authorization: Bearer KEY` when a key is configured."""

    def __init__(self, app: ASGIApp, api_key: str | None):
        self.app, self.expected = app, None if api_key is None else f"Bearer {api_key}".encode()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if self.expected is None or scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        given = dict(scope["headers"]).get(b"authorization", b"")
        if not secrets.compare_digest(given, self.expected):  # constant time: no key oracle
            return await send_json_error(send, 401, "missing or invalid API key: send "
                                         "'Authorization: Bearer <key>'", [(b"www-authenticate", b"Bearer")])
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Refuses a body over the limit with 413 in OpenAI's error format (FastAPI's own limit answers
    in plain text). Reads the body up front, bodies being small, then replays it to the app; later
    `receive` calls go to the server, so the app still sees `http.disconnect` when the client leaves."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return await self._too_large(send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_bytes:
                return await self._too_large(send)
        body, replayed = b"".join(chunks), False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Callable) -> None:
        await send_json_error(send, 413, f"the request body is over the limit of {self.max_bytes} bytes "
                              "(raise --max-body-bytes)")


class AccessLogMiddleware:
    """One structured log line and one counter increment per HTTP request."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics, known_paths: set[str]):
        self.app, self.metrics, self.known_paths = app, metrics, known_paths

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [500]

        async def watch(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            path = scope["path"] if scope["path"] in self.known_paths else "other"  # bounded label set
            self.metrics.http_requests.labels(path=path, status=str(status[0])).inc()
            fields: dict[str, Any] = {"method": scope["method"], "path": scope["path"], "status": status[0],
                                      "duration_s": round(time.perf_counter() - start, 4)}
            log.info("http", extra={"fields": fields})
