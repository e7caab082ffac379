"""Errors in OpenAI's format, `{"error": {"message", "type", "param", "code"}}`, on every route.

Bad input is the client's fault and gets a 4xx naming the problem; the server then keeps serving.
Only a bug in the server or the engine may produce a 500.
"""
from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from radixgen.runtime.errors import EngineOverloadedError, EngineUnavailableError

log = logging.getLogger("radixgen.server")

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
               405: "invalid_request_error", 413: "invalid_request_error", 503: "service_unavailable"}


class APIError(Exception):
    """Raised by route code for a request that must end with an error response."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def error_body(status: int, message: str, param: str | None = None, code: str | int | None = None) -> dict:
    kind = ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "internal_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code if code else status}}


def error_response(status: int, message: str, param: str | None = None, code: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, param, code), status_code=status)


def _describe_validation(exc: RequestValidationError) -> tuple[str, str | None]:
    """Pydantic's error list -> one readable message and the first offending field."""
    parts, param = [], None
    for err in exc.errors()[:5]:
        loc = [str(x) for x in err.get("loc", ()) if x != "body"]
        if err.get("type") == "json_invalid":
            parts.append(f"the body is not valid JSON ({err.get('ctx', {}).get('error', 'parse error')})")
            continue
        if err.get("type") == "model_attributes_type" and not loc:  # e.g. curl -d without a JSON type
            parts.append("the body must be a JSON object sent with Content-Type: application/json")
            continue
        field = ".".join(loc)
        param = param or field or None
        parts.append(f"{field}: {err.get('msg')}" if field else str(err.get("msg")))
    return "; ".join(parts) or "invalid request", param


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.param, exc.code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default is a 422 with its own shape; OpenAI clients expect a 400 in theirs.
        message, param = _describe_validation(exc)
        return error_response(400, message, param)

    @app.exception_handler(EngineOverloadedError)
    async def _overloaded(request: Request, exc: EngineOverloadedError) -> JSONResponse:
        response = error_response(503, f"the server is overloaded: {exc}; retry later", code="overloaded")
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response

    @app.exception_handler(EngineUnavailableError)
    async def _unavailable(request: Request, exc: EngineUnavailableError) -> JSONResponse:
        return error_response(503, str(exc), code="engine_unavailable")

    @app.exception_handler(ValueError)
    async def _value_error(request: Request, exc: ValueError) -> JSONResponse:
        # The engine and SamplingParams raise ValueError, before running anything, for bad input.
        return error_response(400, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404:
            message = f"no route {request.method} {request.url.path}"
        return error_response(exc.status_code, message)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, f"internal error: {type(exc).__name__}")


def json_error_event(status: int, message: str) -> dict[str, Any]:
    """An error inside an SSE stream, after the 200 header has gone out (vLLM and SGLang do the same)."""
    return error_body(status, message)
