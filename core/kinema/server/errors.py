"""The job server's errors, every one in OpenAI's ``{"error": {message, type, param, code}}`` shape.

Routes raise ``APIError`` (or a ``KinemaError``, mapped to a status here);
``add_error_handlers`` turns those, validation failures, unknown routes and
crashes into that shape, so the openai SDK raises its matching exception.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from kinema.backends.limits import LimitError
from kinema.cameo import store as cameo_lib
from kinema.cameo.store import CameoError
from kinema.errors import InvalidRequestError, KinemaError, MissingWeightsError, UnknownBackendError
from kinema.server.jobs import ShuttingDown
from kinema.server.schemas import ErrorResponse


class APIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers


class BodyTooLarge(Exception):
    pass


def cameo_status(error: cameo_lib.CameoError) -> tuple[int, str, str]:
    """(HTTP status, error code, error type) for a cameo error."""
    if isinstance(error, cameo_lib.CameoNotFoundError):
        return 404, "cameo_not_found", "invalid_request_error"
    if isinstance(error, cameo_lib.CameoNotAllowedError):
        return 403, f"cameo_{error.reason}", "permission_error"
    if isinstance(error, cameo_lib.CameoTamperedError):
        return 409, "cameo_tampered", "invalid_request_error"
    return 409, "cameo_conflict", "invalid_request_error"


def video_not_found(video_id: str) -> APIError:
    """The one answer for a job id that is unknown, malformed, or another user's: nothing tells them apart."""
    return APIError(404, f"no video with id {video_id[:64]!r}", param="video_id", code="not_found")


def error_responses(*more: int) -> dict:
    """OpenAPI ``responses`` for a /v1 route: 400, 401, 404, then ``more`` status codes, all ``ErrorResponse``."""
    return {status: {"model": ErrorResponse} for status in (400, 401, 404, *more)}


class _ASCIIJSONResponse(JSONResponse):
    """Errors may quote client input; ASCII escapes keep even unpaired surrogates renderable."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def error_response(
    status: int,
    message: str,
    *,
    type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: dict | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": type, "param": param, "code": code}}
    return _ASCIIJSONResponse(body, status_code=status, headers=headers)


def validation_response(errors: Sequence, prefix: tuple = ("body", "query", "path")) -> JSONResponse:
    first = errors[0] if errors else {}
    loc = [str(part) for part in first.get("loc", ()) if part not in prefix]
    param = loc[0] if loc else None
    message = first.get("msg", "invalid request")
    if first.get("type") == "extra_forbidden" and param:
        message = f"unknown parameter {param!r}"
    elif param:
        message = f"{'.'.join(loc)}: {message}"
    return error_response(400, message, param=param, code="invalid_value")


def kinema_error(error: KinemaError) -> APIError:
    if isinstance(error, CameoError):
        status, code, kind = cameo_status(error)
        return APIError(status, str(error), type=kind, param="cameos", code=code)
    if isinstance(error, UnknownBackendError):
        return APIError(404, str(error), param="model", code="model_not_found")
    if isinstance(error, MissingWeightsError):
        return APIError(409, str(error), param="model", code="model_not_ready")
    if isinstance(error, ShuttingDown):
        return APIError(503, str(error), type="server_error", code="shutting_down")
    if isinstance(error, LimitError):
        return APIError(400, str(error), param=error.param, code="limit_exceeded")
    if isinstance(error, InvalidRequestError):
        return APIError(400, str(error), param=_guess_param(str(error)), code="invalid_value")
    return APIError(400, str(error), code="kinema_error")


_PARAMS = (
    "negative_prompt",
    "prompt",
    "seconds",
    "fps",
    "width",
    "height",
    "seed",
    "steps",
    "guidance",
    "style",
    "tier",
    "image",
    "backend",
    "model",
)


def _guess_param(message: str) -> str | None:
    """InvalidRequestError messages start with the field they are about."""
    for name in _PARAMS:
        if message.startswith(name) or message.startswith(f"unknown {name}"):
            return {"width": "size", "height": "size", "image": "input_reference"}.get(name, name)
    return None


def add_error_handlers(app: FastAPI, *, max_body_bytes: int) -> None:
    """Answer every failure in OpenAI's error shape."""

    @app.exception_handler(APIError)
    async def _api_error(request: Request, error: APIError) -> JSONResponse:
        return error_response(
            error.status, error.message, type=error.type, param=error.param, code=error.code, headers=error.headers
        )

    @app.exception_handler(KinemaError)
    async def _kinema(request: Request, error: KinemaError) -> JSONResponse:
        return await _api_error(request, kinema_error(error))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, error: RequestValidationError) -> JSONResponse:
        return validation_response(error.errors())

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, error: BodyTooLarge) -> JSONResponse:
        return error_response(
            413, f"request body too large; the limit is {max_body_bytes} bytes", code="request_too_large"
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code)
        return error_response(error.status_code, str(error.detail), code=code, headers=getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        # Starlette re-raises after this response is sent, so the server logs the traceback.
        return error_response(
            500,
            f"internal error: {type(error).__name__}; see the server log",
            type="server_error",
            code="internal_error",
        )
