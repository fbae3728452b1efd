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
from kinema.request import MAX_SECONDS, MAX_SIDE, MIN_SIDE
from kinema.server.jobs import ShuttingDown, TakenDown
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
    """A request body went past ``limit`` bytes while it was being read (a chunked upload has no length to check first)."""

    def __init__(self, limit: int):
        super().__init__(f"request body too large; the limit is {limit} bytes")
        self.limit = limit


def cameo_status(error: cameo_lib.CameoError) -> tuple[int, str, str]:
    """(HTTP status, error code, error type) for a cameo error."""
    if isinstance(error, cameo_lib.CameoNotFoundError):
        return 404, "cameo_not_found", "invalid_request_error"
    if isinstance(error, cameo_lib.CameoAmbiguousError):
        return 400, "cameo_ambiguous", "invalid_request_error"
    if isinstance(error, cameo_lib.CameoNotAllowedError):
        return 403, f"cameo_{error.reason}", "permission_error"
    if isinstance(error, cameo_lib.CameoTamperedError):
        return 409, "cameo_tampered", "invalid_request_error"
    return 409, "cameo_conflict", "invalid_request_error"


def video_not_found(video_id: str) -> APIError:
    """The one answer for a job id that is unknown, malformed, or another user's: nothing tells them apart."""
    return APIError(404, f"no video with id {video_id[:64]!r}", param="video_id", code="not_found")


_MEANINGS = {
    400: "The request is not valid (the message says which field and why).",
    401: "Missing or wrong API key.",
    403: "Not allowed: the cameo's owner has not allowed you, or only its owner may do this.",
    404: "No such video, cameo, model or style (or not one you may see).",
    409: "Not possible in the current state (e.g. the video is not finished, the model is not downloaded).",
    413: "The request body or an upload is larger than the limit the message gives.",
    410: "The video was taken down by the person shown in it (code taken_down; the message gives their reason).",
    415: "The body is neither JSON nor multipart/form-data.",
    503: "The server is shutting down.",
}


def error_responses(*more: int) -> dict:
    """OpenAPI ``responses`` for a /v1 route: 400, 401, 404, then ``more`` status codes, all ``ErrorResponse``."""
    return {
        status: {"model": ErrorResponse, "description": _MEANINGS.get(status, "An error (see its message).")}
        for status in (400, 401, 404, *more)
    }


def hide_paths(text: str, *folders: object) -> str:
    """``text`` with each of ``folders`` (the data directory, …) replaced by a placeholder: clients never see
    where the server keeps its files."""
    for folder in folders:
        name = str(folder)
        if len(name) > 1:
            text = text.replace(name, "<kinema data>")
    return text


def _routes(app: FastAPI) -> list[Any]:
    """Every route of ``app``, those of included routers too (FastAPI 0.16x no longer copies them into app.routes)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: app.routes holds them all
        return list(app.routes)
    return list(iter_route_contexts(app.routes))


def allowed_methods(app: FastAPI, path: str, *, own_only: bool = False) -> list[str]:
    """Every method some route answers at ``path`` (for a 405's ``Allow``), not only the first route's.

    A path that is a route of its own (``/v1/videos/edits``) is not also a value of another route's parameter
    (``/v1/videos/{video_id}``); ``own_only``: only such routes' methods.
    """
    routes = [route for route in _routes(app) if getattr(route, "path_regex", None) and route.path_regex.match(path)]
    own = [route for route in routes if not getattr(route, "param_convertors", None)]
    return sorted({method for route in (own if own or own_only else routes) for method in route.methods or ()})


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
    elif first.get("type") == "string_pattern_mismatch" and param:
        # The pattern is in the schema; people get what it means, and what they sent.
        hint = _PATTERN_HINTS.get(param, "is not in the form the API schema gives")
        message = f"{'.'.join(loc)} {hint}; got {str(first.get('input'))[:64]!r}"
    elif param:
        message = f"{'.'.join(loc)}: {message}"
    return error_response(400, message, param=param, code="invalid_value")


_PATTERN_HINTS = {
    "size": f"must be WIDTHxHEIGHT, each side (width and height) a whole number from {MIN_SIDE} to {MAX_SIDE},"
    " e.g. '768x512'",
    "seconds": f"must be a number of seconds above 0 and at most {MAX_SECONDS:g}, e.g. '4' or '2.5'",
    "prompt": "is empty: describe the clip you want",
    "cameos": "must be cameo names (1-40 lowercase letters, digits, '-' or '_'), comma-separated",
    "speech": "must be a cameo's name (1-40 lowercase letters, digits, '-' or '_')",
    "name": "must be 1-40 lowercase letters, digits, '-' or '_', e.g. 'alice'",
    "after": "must be a video id (video_ and 32 hex digits), the last_id of the previous page",
    "image_url": "must be a data URL of a PNG, JPEG or WebP image (data:image/png;base64,...)",
}


def kinema_error(error: KinemaError) -> APIError:
    if isinstance(error, CameoError):
        status, code, kind = cameo_status(error)
        return APIError(status, str(error), type=kind, param="cameos", code=code)
    if isinstance(error, UnknownBackendError):
        return APIError(404, str(error), param="model", code="model_not_found")
    if isinstance(error, MissingWeightsError):
        return APIError(409, str(error), param="model", code="model_not_ready")
    if isinstance(error, TakenDown):
        return APIError(410, str(error), param="video_id", code="taken_down")
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
    "two_stage",
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


def _private_folders(request: Request) -> tuple:
    manager = getattr(request.app.state, "manager", None)
    if manager is None:
        return ()
    home = manager.directory.parent
    return (home.resolve(), home)  # the longer first when home is a link


def add_error_handlers(app: FastAPI) -> None:
    """Answer every failure in OpenAI's error shape."""

    @app.exception_handler(APIError)
    async def _api_error(request: Request, error: APIError) -> JSONResponse:
        return error_response(
            error.status, error.message, type=error.type, param=error.param, code=error.code, headers=error.headers
        )

    @app.exception_handler(KinemaError)
    async def _kinema(request: Request, error: KinemaError) -> JSONResponse:
        mapped = kinema_error(error)
        mapped.message = hide_paths(mapped.message, *_private_folders(request))
        return await _api_error(request, mapped)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, error: RequestValidationError) -> JSONResponse:
        return validation_response(error.errors())

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, error: BodyTooLarge) -> JSONResponse:
        return error_response(413, str(error), code="request_too_large")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code)
        headers = getattr(error, "headers", None)
        message = str(error.detail)
        if error.status_code == 405:
            # Starlette names only the first route's methods; a path served by several routes allows them all.
            allow = ", ".join(allowed_methods(request.app, request.url.path))
            headers = {**(headers or {}), "Allow": allow}
            message = f"{request.method} is not allowed here; use {allow}"
        return error_response(error.status_code, message, code=code, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        # Starlette re-raises after this response is sent, so the server logs the traceback.
        return error_response(
            500,
            f"internal error: {type(error).__name__}; see the server log",
            type="server_error",
            code="internal_error",
        )
