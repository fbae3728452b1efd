"""``kinema serve``: the OpenAI Videos API, served locally, plus kinema's extensions.

Clients written for OpenAI's (deprecated) Sora 2 API work by pointing the
official SDK at ``http://127.0.0.1:8765/v1``. Hosts such as Blender and OBS
talk to this server with ``kinema/client.py`` and never import torch.

OpenAI endpoints: ``POST /v1/videos`` (JSON or multipart), ``GET /v1/videos``,
``GET /v1/videos/{id}``, ``GET /v1/videos/{id}/content``, ``DELETE /v1/videos/{id}``.
kinema's: ``POST /v1/videos/{id}/cancel``, ``GET /v1/videos/{id}/events``
(server-sent events), ``GET /v1/models``, ``GET /health``.

A cancelled job reads ``status: "failed"`` with ``error.code == "cancelled"``
(OpenAI's status enum has no "cancelled", and clients written for it poll
until completed or failed); ``kinema.status`` says ``"cancelled"``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import io
import ipaddress
import json
import logging
import os
import re
import socket
import threading
from pathlib import Path
from typing import Any, Literal, Optional, Union

from fastapi import Depends, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from .cameo_api import cameo_router
from .cameo_api import MAX_UPLOAD_BYTES as CAMEO_UPLOAD_BYTES
from .cameo_api import status_of as cameo_status
from .cameos import CameoError, local_user
from .errors import InvalidRequestError, KinemaError, MissingWeightsError, UnknownBackendError
from .jobs import TERMINAL, THUMBNAIL_FILE, VIDEO_FILE, Event, JobManager, JobsBusyError, ShuttingDown, is_valid_id
from .users import user_for_key

DEFAULT_PORT = 8765
MAX_IMAGE_BYTES = 10 * 2**20  # an uploaded first frame
MAX_BODY_BYTES = MAX_IMAGE_BYTES * 4 // 3 + 2**20  # the image as base64 JSON, plus the other fields
MAX_IMAGE_SIDE = 4096
IMAGE_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
SSE_KEEPALIVE_SECONDS = 15.0
POLL_AFTER_MS = 500  # tells the openai SDK's poll() how often to ask
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# Model names clients written for OpenAI send by default; they run the server's default backend.
OPENAI_MODEL_PREFIX = "sora-"


# --------------------------------------------------------------------------- API shapes


class VideoError(BaseModel):
    code: str
    message: str


class KinemaVideoInfo(BaseModel):
    """kinema's extra detail on a job (OpenAI clients ignore it)."""

    status: Literal["queued", "in_progress", "completed", "failed", "cancelled"]
    backend: str
    device: str
    step: int
    total: int
    stage: str
    width: int
    height: int
    num_frames: int
    fps: str
    steps: int
    guidance: float
    seed: int
    audio: bool
    negative_prompt: str
    style: Optional[str]
    tier: str = "standard"
    has_image: bool
    attempts: int
    cancel_requested: bool
    started_at: Optional[int]
    notes: list[str]
    kind: Literal["generate", "remix", "extend", "storyboard"] = "generate"
    parent: Optional[str] = Field(None, description="The video a remix or extend builds on.")


class Video(BaseModel):
    """A video job, shaped like OpenAI's ``Video`` object."""

    id: str
    object: Literal["video"] = "video"
    status: Literal["queued", "in_progress", "completed", "failed"]
    progress: int = Field(ge=0, le=100)
    created_at: int
    completed_at: Optional[int] = None
    expires_at: Optional[int] = None
    model: str
    prompt: Optional[str] = None
    remixed_from_video_id: Optional[str] = None
    seconds: str = Field(description="Duration that will actually be made, e.g. '0.375'.")
    size: str = Field(description="WIDTHxHEIGHT that will actually be made.")
    error: Optional[VideoError] = None
    kinema: KinemaVideoInfo


class VideoList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Video]
    first_id: Optional[str]
    last_id: Optional[str]
    has_more: bool


class VideoDeleted(BaseModel):
    id: str
    object: Literal["video.deleted"] = "video.deleted"
    deleted: bool


class ModelInfo(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "kinema"
    backend: str
    ready: bool
    detail: str
    description: str
    aliases: list[str]


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelInfo]


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    auth: bool = Field(description="Whether /v1 needs an 'Authorization: Bearer <KINEMA_API_KEY>' header.")


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: Optional[str] = None
    code: Optional[str] = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class ImageReference(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image_url: Optional[str] = Field(None, description="A data URL: data:image/png;base64,... (no remote URLs).")
    file_id: Optional[str] = Field(None, description="Not supported by kinema (there is no files API).")


class VideoCreateParams(BaseModel):
    """OpenAI's create-video fields, plus kinema's (send them with the SDK's ``extra_body``)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(description="What the clip shows and sounds like.")
    model: Optional[str] = Field(None, description="A backend (tiny, ltx2, wan) or a pulled model id; sora-* = the server default.")
    seconds: Optional[Union[str, float]] = Field(None, description="Length in seconds, e.g. '4' (snapped to the model's frame grid).")
    size: Optional[str] = Field(None, description="WIDTHxHEIGHT, e.g. '768x512' (snapped to the model's grid).")
    input_reference: Optional[ImageReference] = Field(None, description="First frame (multipart: a PNG/JPEG/WebP file).")
    negative_prompt: Optional[str] = None
    seed: Optional[int] = None
    steps: Optional[int] = None
    guidance: Optional[float] = None
    fps: Optional[float] = None
    style: Optional[str] = None
    tier: Optional[str] = Field(None, description="Quality tier: draft, standard (default) or final.")
    backend: Optional[str] = None
    audio: Optional[bool] = Field(None, description="false for picture only (default true).")
    cameos: Optional[Union[list[str], str]] = Field(
        None, description="Cameos (people) to put in the clip, used only with their owners' consent for your API"
                          " key's user; multipart: comma-separated.")
    speech: Optional[str] = Field(None, description="One of the cameos: its recorded voice drives the clip (ltx2).")


class _FollowUpParams(BaseModel):
    """What remix, extend and storyboard share with create: kinema's generation settings (all optional)."""

    model_config = ConfigDict(extra="forbid")

    model: Optional[str] = Field(None, description="Backend or pulled model id (default: the one that made the source video).")
    backend: Optional[str] = None
    negative_prompt: Optional[str] = None
    seed: Optional[int] = None
    steps: Optional[int] = None
    guidance: Optional[float] = None
    style: Optional[str] = None
    tier: Optional[str] = Field(None, description="Quality tier: draft, standard (default) or final.")


class VideoRemixParams(_FollowUpParams):
    """OpenAI's remix (``prompt``), plus kinema's ``strength`` and ``keep_audio``."""

    prompt: str = Field(description="What the remixed clip shows and sounds like.")
    strength: float = Field(0.6, gt=0, le=1, description="How far to move from the source: near 0 keeps it, 1 keeps only its length.")
    keep_audio: bool = Field(False, description="Keep the source's sound instead of making new sound for the prompt.")


class VideoExtendParams(_FollowUpParams):
    """kinema's extend: the same clip, ``seconds`` longer."""

    seconds: Union[str, float] = Field(description="How many seconds to add, e.g. '3'.")
    prompt: Optional[str] = Field(None, description="What happens next (default: the source video's prompt).")


class StoryboardCreateParams(_FollowUpParams):
    """A storyboard as text ('Shot 1 (2s): …' lines, YAML or JSON) or as an object with 'shots'."""

    storyboard: Union[str, dict[str, Any]] = Field(description="The storyboard (see the README's Storyboards section).")
    format: Literal["auto", "text", "yaml", "json"] = "auto"
    size: Optional[str] = Field(None, description="WIDTHxHEIGHT for every shot.")
    fps: Optional[float] = None
    audio: Optional[bool] = None


# --------------------------------------------------------------------------- errors


class APIError(Exception):
    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: Optional[str] = None, code: Optional[str] = None, headers: Optional[dict] = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers


class BodyTooLarge(Exception):
    pass


class _ASCIIJSONResponse(JSONResponse):
    """Errors may quote client input; ASCII escapes keep even unpaired surrogates renderable."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def _error_response(status: int, message: str, *, type: str = "invalid_request_error", param: Optional[str] = None,
                    code: Optional[str] = None, headers: Optional[dict] = None) -> JSONResponse:
    body = {"error": {"message": message, "type": type, "param": param, "code": code}}
    return _ASCIIJSONResponse(body, status_code=status, headers=headers)


def _owner() -> str:
    """Who a request without a user key acts as: the user running the server."""
    try:
        return local_user()
    except InvalidRequestError:  # a login name kinema cannot use as a user name
        return "local"


def _cameo_fields(params: Any, user: str) -> dict:
    """The cameo part of a create request. Speech may only name a cameo: the server reads no files for clients."""
    names = params.cameos.split(",") if isinstance(params.cameos, str) else (params.cameos or [])
    names = tuple(name.strip() for name in names if isinstance(name, str) and name.strip())
    if params.speech is not None and params.speech not in names:
        raise APIError(400, "speech must be the name of one of the cameos (its recorded voice drives the clip)",
                       param="speech", code="invalid_value")
    return {"cameos": names, "speech": params.speech, "user": user}


def _kinema_error(error: KinemaError) -> APIError:
    if isinstance(error, CameoError):
        status, code, kind = cameo_status(error)
        return APIError(status, str(error), type=kind, param="cameos", code=code)
    if isinstance(error, UnknownBackendError):
        return APIError(404, str(error), param="model", code="model_not_found")
    if isinstance(error, MissingWeightsError):
        return APIError(409, str(error), param="model", code="model_not_ready")
    if isinstance(error, ShuttingDown):
        return APIError(503, str(error), type="server_error", code="shutting_down")
    if isinstance(error, InvalidRequestError):
        return APIError(400, str(error), param=_guess_param(str(error)), code="invalid_value")
    return APIError(400, str(error), code="kinema_error")


_PARAMS = ("negative_prompt", "prompt", "seconds", "fps", "width", "height", "seed", "steps", "guidance",
           "style", "tier", "image", "backend", "model")


def _guess_param(message: str) -> Optional[str]:
    """InvalidRequestError messages start with the field they are about."""
    for name in _PARAMS:
        if message.startswith(name) or message.startswith(f"unknown {name}"):
            return {"width": "size", "height": "size", "image": "input_reference"}.get(name, name)
    return None


# --------------------------------------------------------------------------- security


def is_loopback(host: str) -> bool:
    """True if ``host`` (an address or name) reaches only this machine."""
    host = host.strip().strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def check_bind(host: str, api_key: Optional[str]) -> None:
    """Refuse to listen beyond this machine without an API key."""
    if is_loopback(host) or api_key:
        return
    raise KinemaError(
        f"refusing to listen on {host} without an API key: anyone who can reach this machine could run jobs"
        " and download your clips. Set KINEMA_API_KEY to a long random secret (clients send it as"
        " 'Authorization: Bearer <key>'), or serve on 127.0.0.1."
    )


def _host_name(header: str) -> str:
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class _Guard:
    """ASGI middleware: cap request bodies, and without an API key accept only loopback Host and Origin.

    The Host/Origin check stops web pages in the user's browser from driving a
    loopback server (DNS rebinding, cross-site form posts).
    """

    def __init__(self, app: Any, *, max_body: int, check_hosts: bool, extra_hosts: frozenset[str]):
        self.app, self.max_body, self.check_hosts = app, max_body, check_hosts
        self.hosts = LOOPBACK_HOSTS | extra_hosts

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.check_hosts:
            host = _host_name(headers.get("host", ""))
            origin = headers.get("origin")
            origin_host = _host_name(origin.split("://", 1)[-1].split("/", 1)[0]) if origin else None
            if host not in self.hosts or (origin is not None and origin_host not in self.hosts):
                response = _error_response(403, "this kinema server answers only requests addressed to this machine"
                                           " (loopback Host, no foreign Origin); set KINEMA_API_KEY to serve others",
                                           type="permission_error", code="forbidden_host")
                return await response(scope, receive, send)
        length = headers.get("content-length")
        # A cameo recording is a video upload: it gets its own, larger limit.
        limit = max(self.max_body, CAMEO_UPLOAD_BYTES) if scope.get("path") == "/v1/cameos" else self.max_body
        if length is not None and (not length.isdigit() or int(length) > limit):
            response = _error_response(413, f"request body too large; the limit is {limit} bytes",
                                       code="request_too_large")
            return await response(scope, receive, send)
        received = 0

        async def limited_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge()
            return message

        await self.app(scope, limited_receive, send)


# --------------------------------------------------------------------------- the app


def create_app(
    *,
    api_key: Any = ...,
    home: Optional[Path] = None,
    default_backend: str = "tiny",
    start_workers: bool = True,
    allowed_hosts: tuple[str, ...] = (),
    max_body_bytes: int = MAX_BODY_BYTES,
) -> FastAPI:
    """The ASGI app. ``api_key`` defaults to ``KINEMA_API_KEY``; ``None`` or '' means no key.

    ``home`` is the data directory (default ``kinema_home()``); jobs live in ``home/jobs``.
    ``start_workers=False`` queues jobs without running them (schema fuzzing).
    """
    from . import __version__

    if api_key is ...:
        api_key = os.environ.get("KINEMA_API_KEY") or None
    api_key = api_key or None
    expected = api_key.encode("utf-8") if api_key else None
    manager = JobManager(home, start_workers=start_workers)

    def startup() -> None:
        from .plugins import load_plugins

        load_plugins()  # once, before requests: its first call is not safe from several threads at once
        manager.start()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await run_in_threadpool(startup)
        app.state.manager = manager
        try:
            yield
        finally:
            await run_in_threadpool(manager.stop)

    app = FastAPI(
        title="kinema",
        version=__version__,
        summary="Local video with synchronized audio, speaking the OpenAI Videos API.",
        lifespan=lifespan,
    )
    app.state.manager = manager
    app.add_middleware(_Guard, max_body=max_body_bytes, check_hosts=expected is None,
                       extra_hosts=frozenset(h.lower() for h in allowed_hosts))

    bearer = HTTPBearer(auto_error=False, description="KINEMA_API_KEY, when the server has one.")

    def authorize(request: Request, credentials: Optional[HTTPAuthorizationCredentials] = Depends(bearer)) -> str:
        """The kinema user asking: a user's own key (`kinema keys add`), else the server's owner."""
        user = user_for_key(credentials.credentials if credentials is not None else None)
        if user is None:
            if expected is not None:
                given = credentials.credentials.encode("utf-8") if credentials is not None else b""
                if not hmac.compare_digest(given, expected):
                    raise APIError(401, "missing or wrong API key: send 'Authorization: Bearer <KINEMA_API_KEY>'",
                                   type="authentication_error", code="invalid_api_key",
                                   headers={"WWW-Authenticate": "Bearer"})
            user = _owner()
        request.state.kinema_user = user
        return user

    errors = {400: {"model": ErrorResponse}, 401: {"model": ErrorResponse}, 404: {"model": ErrorResponse}}

    # -- error handlers: everything in OpenAI's {"error": {...}} shape

    @app.exception_handler(APIError)
    async def _api_error(request: Request, error: APIError) -> JSONResponse:
        return _error_response(error.status, error.message, type=error.type, param=error.param, code=error.code,
                               headers=error.headers)

    @app.exception_handler(KinemaError)
    async def _kinema(request: Request, error: KinemaError) -> JSONResponse:
        return await _api_error(request, _kinema_error(error))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, error: RequestValidationError) -> JSONResponse:
        return _validation_response(error.errors())

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, error: BodyTooLarge) -> JSONResponse:
        return _error_response(413, f"request body too large; the limit is {max_body_bytes} bytes",
                               code="request_too_large")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code)
        return _error_response(error.status_code, str(error.detail), code=code, headers=getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        # Starlette re-raises after this response is sent, so the server logs the traceback.
        return _error_response(500, f"internal error: {type(error).__name__}; see the server log",
                               type="server_error", code="internal_error")

    # -- unauthenticated

    @app.get("/health", response_model=Health, tags=["kinema"])
    def health() -> dict:
        """Liveness: answers as soon as the server accepts jobs."""
        return {"status": "ok", "version": __version__, "auth": expected is not None}

    # -- /v1

    from fastapi import APIRouter

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(authorize)], responses={401: {"model": ErrorResponse}})

    def lookup(video_id: str) -> dict:
        record = manager.get(video_id)
        if record is None:
            raise APIError(404, f"no video with id {video_id[:64]!r}", param="video_id", code="not_found")
        return record

    @v1.post(
        "/videos",
        response_model=Video,
        tags=["videos"],
        responses={**errors, 409: {"model": ErrorResponse}, 413: {"model": ErrorResponse}},
        openapi_extra={"requestBody": {"required": True, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/VideoCreateParams"}},
            "multipart/form-data": {"schema": {"$ref": "#/components/schemas/VideoCreateForm"}},
        }}},
    )
    async def create_video(request: Request) -> dict:
        """Queue a video job (OpenAI ``videos.create``). Bad requests fail here with 400, not as failed jobs."""
        fields, upload = await _read_create_body(request)
        try:
            params = VideoCreateParams.model_validate(fields)
        except ValidationError as error:
            return _validation_response(error.errors(), prefix=())
        for name, value in params:
            if isinstance(value, str) and not _is_utf8(value):
                raise APIError(400, f"{name} is not valid text (it has unpaired surrogates)", param=name,
                               code="invalid_value")
        image = await _read_image(upload, params.input_reference)
        backend, model, display = await run_in_threadpool(_resolve_model, params.model, params.backend, default_backend)
        width, height = _parse_size(params.size)
        request_fields = {
            "prompt": params.prompt, "negative_prompt": params.negative_prompt or "",
            "seconds": _parse_seconds(params.seconds), "fps": params.fps, "width": width, "height": height,
            "seed": params.seed, "steps": params.steps, "guidance": params.guidance, "style": params.style,
            "tier": params.tier or "standard",
            "audio": True if params.audio is None else params.audio, "backend": backend, "model": model,
            **_cameo_fields(params, request.state.kinema_user),
        }
        record = await run_in_threadpool(manager.submit, request_fields, image=image, display_model=display)
        return to_video(record)

    async def follow_up(params: _FollowUpParams, prompt: str, task: dict, parent: Optional[dict] = None,
                        extra: Optional[dict] = None) -> dict:
        """Queue a remix, extend or storyboard job: like create, with a task the worker runs instead."""
        for name, value in params:
            if isinstance(value, str) and not _is_utf8(value):
                raise APIError(400, f"{name} is not valid text (it has unpaired surrogates)", param=name,
                               code="invalid_value")
        if parent is not None and params.model is None and params.backend is None:
            backend, model, display = parent["backend"], parent["request"].get("model"), parent["model"]
        else:
            backend, model, display = await run_in_threadpool(_resolve_model, params.model, params.backend, default_backend)
        request_fields = {
            "prompt": prompt, "negative_prompt": params.negative_prompt or "", "seed": params.seed,
            "steps": params.steps, "guidance": params.guidance, "style": params.style, "backend": backend,
            "tier": params.tier or "standard", "model": model, **(extra or {}),
        }
        record = await run_in_threadpool(manager.submit, request_fields, display_model=display, task=task)
        return to_video(record)

    def finished(video_id: str) -> dict:
        record = lookup(video_id)
        if record["status"] != "completed":
            raise APIError(409, f"video {video_id!r} is {record['status']}; only a completed video can be remixed"
                                " or extended", param="video_id", code="video_not_ready")
        return record

    @v1.post("/videos/{video_id}/remix", response_model=Video, tags=["videos"],
             responses={**errors, 409: {"model": ErrorResponse}})
    async def remix_video(video_id: str, params: VideoRemixParams) -> dict:
        """A new video: the source redone for a new prompt (OpenAI ``videos.remix``); ``strength`` says how far."""
        parent = finished(video_id)
        task = {"kind": "remix", "parent": video_id, "strength": params.strength, "keep_audio": params.keep_audio}
        return await follow_up(params, params.prompt, task, parent)

    @v1.post("/videos/{video_id}/extend", response_model=Video, tags=["videos"],
             responses={**errors, 409: {"model": ErrorResponse}})
    async def extend_video(video_id: str, params: VideoExtendParams) -> dict:
        """A new video: the source plus ``seconds`` more, continued from its last frames (kinema)."""
        parent = finished(video_id)
        task = {"kind": "extend", "parent": video_id, "seconds": _parse_seconds(params.seconds),
                "prompt_given": params.prompt is not None}
        return await follow_up(params, params.prompt or parent["prompt"], task, parent)

    @v1.post("/storyboards", response_model=Video, tags=["videos"], responses=errors)
    async def create_storyboard(params: StoryboardCreateParams) -> dict:
        """A video made from a storyboard's shots, with cuts, continuity and crossfaded sound (kinema)."""
        from .storyboard import from_dict, parse_storyboard

        width, height = _parse_size(params.size)
        overrides = {k: v for k, v in {"width": width, "height": height, "fps": params.fps, "steps": params.steps,
                                       "guidance": params.guidance, "audio": params.audio}.items() if v is not None}
        if params.style:
            overrides["world_style"] = params.style
        task = {"kind": "storyboard", "storyboard": params.storyboard, "format": params.format, "overrides": overrides}
        if params.seed is not None:
            task["seed"] = params.seed
        board = await run_in_threadpool(
            lambda: parse_storyboard(params.storyboard, format=params.format, source="storyboard")
            if isinstance(params.storyboard, str) else from_dict(params.storyboard, source="storyboard"))
        title = board.title or board.shots[0].prompt
        no_style = params.model_copy(update={"style": None})  # the style is the film's, applied per shot
        return await follow_up(no_style, title, task, extra={"audio": board.audio if params.audio is None else params.audio})

    @v1.get("/videos", response_model=VideoList, tags=["videos"], responses=errors)
    def list_videos(
        after: Optional[str] = Query(None, description="Last id of the previous page."),
        limit: int = Query(20, ge=1, le=100),
        order: Literal["asc", "desc"] = Query("desc", description="By submission time."),
    ) -> dict:
        """Jobs, newest first by default (OpenAI ``videos.list``)."""
        try:
            records, has_more = manager.list(limit=limit, after=after, order=order)
        except KeyError:
            raise APIError(400, f"after: no video with id {str(after)[:64]!r}", param="after", code="not_found")
        data = [to_video(r) for r in records]
        return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None, "has_more": has_more}

    @v1.get("/videos/{video_id}", response_model=Video, tags=["videos"], responses=errors)
    def get_video(video_id: str) -> JSONResponse:
        """One job (OpenAI ``videos.retrieve``)."""
        record = lookup(video_id)
        headers = {} if record["status"] in TERMINAL else {"openai-poll-after-ms": str(POLL_AFTER_MS)}
        return JSONResponse(Video.model_validate(to_video(record)).model_dump(mode="json"), headers=headers)

    @v1.get(
        "/videos/{video_id}/content",
        tags=["videos"],
        response_class=FileResponse,
        responses={**errors, 409: {"model": ErrorResponse}, 200: {"content": {
            "video/mp4": {"schema": {"type": "string", "format": "binary"}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
        }}},
    )
    def download_content(
        video_id: str,
        variant: Literal["video", "thumbnail", "spritesheet"] = Query("video"),
    ) -> FileResponse:
        """The MP4 (H.264 + AAC), or ``variant=thumbnail`` for a PNG of the middle frame (OpenAI ``download_content``)."""
        record = lookup(video_id)
        if variant == "spritesheet":
            raise APIError(400, "kinema has no spritesheet; ask for variant=video or variant=thumbnail",
                           param="variant", code="unsupported_variant")
        if record["status"] != "completed":
            raise APIError(409, f"video {video_id} is {_public_status(record)}, not completed; nothing to download yet",
                           code="not_ready")
        name, media_type, suffix = {"video": (VIDEO_FILE, "video/mp4", "mp4"),
                                    "thumbnail": (THUMBNAIL_FILE, "image/png", "png")}[variant]
        path = manager.artifact(video_id, name)
        if path is None:
            raise APIError(404, f"video {video_id} has no {variant} file any more", code="not_found")
        return FileResponse(path, media_type=media_type, filename=f"{video_id}.{suffix}")

    @v1.get("/videos/{video_id}/provenance", tags=["kinema"], responses={**errors, 409: {"model": ErrorResponse}})
    def video_provenance(video_id: str) -> dict:
        """``kinema verify`` for a finished video: C2PA manifest and why it is (in)valid, signer, generator,
        cameos, parents, and the invisible watermark's payload."""
        from .provenance import verify

        record = lookup(video_id)
        if record["status"] != "completed":
            raise APIError(409, f"video {video_id} is {_public_status(record)}, not completed; nothing to check yet",
                           code="not_ready")
        path = manager.artifact(video_id, VIDEO_FILE)
        if path is None:
            raise APIError(404, f"video {video_id} has no video file any more", code="not_found")
        report = verify(path).to_dict()
        report.pop("path", None)  # server paths stay private
        return {"id": video_id, **report}

    @v1.delete("/videos/{video_id}", response_model=VideoDeleted, tags=["videos"],
               responses={**errors, 409: {"model": ErrorResponse}})
    async def delete_video(video_id: str) -> dict:
        """Delete a job and its files; a running job is cancelled first (OpenAI ``videos.delete``)."""
        for _ in range(3):
            outcome = await run_in_threadpool(manager.delete, video_id)
            if outcome == "deleted":
                return {"id": video_id, "object": "video.deleted", "deleted": True}
            if outcome == "missing":
                raise APIError(404, f"no video with id {video_id[:64]!r}", param="video_id", code="not_found")
            await run_in_threadpool(manager.cancel, video_id)
            await _wait_until_final(manager, video_id, timeout=60.0)
        raise APIError(409, f"video {video_id} is still stopping; try again", code="busy")

    @v1.post("/videos/{video_id}/cancel", response_model=Video, tags=["kinema"],
             responses={**errors, 409: {"model": ErrorResponse}})
    def cancel_video(video_id: str) -> dict:
        """Cancel a queued job at once, or a running one within one step (kinema extension).

        A running job may still read ``in_progress`` (with ``kinema.cancel_requested``) for one step.
        """
        record = lookup(video_id)
        if record["status"] in ("completed", "failed"):
            raise APIError(409, f"video {video_id} already {record['status']}; nothing to cancel", code="already_final")
        return to_video(manager.cancel(video_id) or record)

    @v1.get(
        "/videos/{video_id}/events",
        tags=["kinema"],
        response_class=StreamingResponse,
        responses={**errors, 200: {"description": "text/event-stream", "content": {
            "text/event-stream": {"schema": {"type": "string"}}}}},
    )
    async def video_events(video_id: str) -> StreamingResponse:
        """Server-sent events for one job (kinema extension).

        First ``video`` (the job as it is now) and the current attempt's ``progress``
        so far, then live ``progress`` events {id, step, total, stage, progress,
        preview_jpeg_base64?}, ending with ``completed``, ``failed``, ``cancelled``
        (data: the job) or ``deleted``.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event] = asyncio.Queue()

        def deliver(event: Event) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, event)

        subscription = await run_in_threadpool(manager.subscribe, video_id, deliver) if is_valid_id(video_id) else None
        if subscription is None:
            raise APIError(404, f"no video with id {video_id[:64]!r}", param="video_id", code="not_found")
        snapshot, unsubscribe = subscription

        async def stream():
            try:
                for event in snapshot:
                    yield _format_event(event)
                    if event.name in _FINAL_EVENTS:
                        return
                while True:
                    try:
                        event = await asyncio.wait_for(queue.get(), SSE_KEEPALIVE_SECONDS)
                    except asyncio.TimeoutError:
                        yield ": keepalive\n\n"
                        continue
                    yield _format_event(event)
                    if event.name in _FINAL_EVENTS:
                        return
            finally:
                unsubscribe()

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @v1.get("/models", response_model=ModelList, tags=["kinema"], responses=errors)
    def list_models() -> dict:
        """Backends and pulled models this server can run (``model`` values for ``POST /v1/videos``)."""
        return {"object": "list", "data": _model_list()}

    app.include_router(v1)
    app.include_router(cameo_router(authorize, APIError), prefix="/v1", dependencies=[Depends(authorize)],
                       responses={401: {"model": ErrorResponse}})

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            json_schema = VideoCreateParams.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(json_schema.pop("$defs", {}))
            components["VideoCreateParams"] = json_schema
            form = json.loads(json.dumps(json_schema))
            form["title"] = "VideoCreateForm"
            form["properties"]["input_reference"] = {"type": "string", "format": "binary",
                                                     "description": "First frame: a PNG, JPEG or WebP file."}
            components["VideoCreateForm"] = form
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


_FINAL_EVENTS = frozenset(TERMINAL | {"deleted"})


def _validation_response(errors: list, prefix: tuple = ("body", "query", "path")) -> JSONResponse:
    first = errors[0] if errors else {}
    loc = [str(part) for part in first.get("loc", ()) if part not in prefix]
    param = loc[0] if loc else None
    message = first.get("msg", "invalid request")
    if first.get("type") == "extra_forbidden" and param:
        message = f"unknown parameter {param!r}"
    elif param:
        message = f"{'.'.join(loc)}: {message}"
    return _error_response(400, message, param=param, code="invalid_value")


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _public_status(record: dict) -> str:
    return "failed" if record["status"] == "cancelled" else record["status"]


def to_video(record: dict) -> dict:
    """A job record as OpenAI's Video object (with kinema's detail under ``kinema``)."""
    plan, request = record["plan"], record["request"]
    task = plan.get("task") or {}
    error = None
    if record["status"] in ("failed", "cancelled"):
        error = {"code": record["error_code"] or "failed", "message": record["error_message"] or "failed"}
    return {
        "id": record["id"],
        "object": "video",
        "status": _public_status(record),
        "progress": record["progress"],
        "created_at": record["created_at"],
        "completed_at": record["completed_at"],
        "expires_at": None,
        "model": record["model"],
        "prompt": record["prompt"],
        "remixed_from_video_id": task.get("parent") if task.get("kind") == "remix" else None,
        "seconds": f"{plan['seconds']:g}",
        "size": f"{plan['width']}x{plan['height']}",
        "error": error,
        "kinema": {
            "status": record["status"], "backend": record["backend"], "device": record["device"],
            "step": record["step"], "total": record["total"] or plan["steps"], "stage": record["stage"],
            "width": plan["width"], "height": plan["height"], "num_frames": plan["num_frames"], "fps": plan["fps"],
            "steps": plan["steps"], "guidance": plan["guidance"], "seed": plan["seed"], "audio": plan["audio"],
            "negative_prompt": request.get("negative_prompt") or "", "style": request.get("style"),
            "tier": request.get("tier") or "standard", "has_image": record["has_image"], "attempts": record["attempts"],
            "cancel_requested": record["cancel_requested"], "started_at": record["started_at"],
            "notes": plan["notes"], "kind": task.get("kind", "generate"), "parent": task.get("parent"),
        },
    }


def _format_event(event: Event) -> str:
    data = event.data
    if event.name in ("video", *TERMINAL):
        data = to_video(data)
    lines = [f"id: {event.seq}"] if event.seq else []
    lines += [f"event: {event.name}", f"data: {json.dumps(data, separators=(',', ':'))}"]
    return "\n".join(lines) + "\n\n"


async def _wait_until_final(manager: JobManager, job_id: str, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    def deliver(event: Event) -> None:
        if event.name in _FINAL_EVENTS:
            loop.call_soon_threadsafe(done.set)

    subscription = await run_in_threadpool(manager.subscribe, job_id, deliver)
    if subscription is None:
        return
    snapshot, unsubscribe = subscription
    try:
        if not any(e.name in _FINAL_EVENTS for e in snapshot):
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(done.wait(), timeout)
    finally:
        unsubscribe()


# --------------------------------------------------------------------------- request parsing


async def _read_create_body(request: Request) -> tuple[dict, Optional[UploadFile]]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        try:
            form = await request.form(max_files=1, max_fields=64, max_part_size=1024 * 1024)
        except BodyTooLarge:
            raise
        except Exception as error:  # malformed multipart
            raise APIError(400, f"could not read the form: {error}", code="invalid_body") from None
        fields: dict[str, Any] = {}
        upload = None
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key != "input_reference":
                    raise APIError(400, f"unexpected file field {key[:64]!r}; send the image as input_reference",
                                   param=key[:64], code="invalid_value")
                upload = value
            elif key in ("input_reference[image_url]", "input_reference[file_id]"):
                fields.setdefault("input_reference", {})[key[16:-1]] = value
            elif value != "":  # the SDK sends None as ''
                fields[key] = value
        return fields, upload
    if content_type not in ("application/json", ""):
        raise APIError(415, f"send JSON or multipart/form-data, not {content_type[:64]!r}", code="unsupported_media_type")
    body = await request.body()
    try:
        fields = json.loads(body) if body else {}
    except (ValueError, UnicodeDecodeError):
        raise APIError(400, "the body is not valid JSON", code="invalid_json") from None
    if not isinstance(fields, dict):
        raise APIError(400, "the body must be a JSON object", code="invalid_json")
    return fields, None


_DATA_URL = re.compile(r"data:(image/[a-z0-9.+-]+)?(;[a-z0-9=.+-]+)*;base64,(?P<data>.*)", re.IGNORECASE | re.DOTALL)


async def _read_image(upload: Optional[UploadFile], reference: Optional[ImageReference]) -> Any:
    """An uploaded first frame as uint8 [H, W, 3], or None. Only PNG, JPEG, WebP up to the size limits."""
    if upload is not None:
        data = await upload.read(MAX_IMAGE_BYTES + 1)
    elif reference is not None:
        if reference.file_id:
            raise APIError(400, "kinema has no files API: send input_reference as a file upload or a data URL",
                           param="input_reference", code="unsupported_value")
        match = _DATA_URL.fullmatch(reference.image_url or "")
        if match is None:
            raise APIError(400, "input_reference.image_url must be a base64 data URL (data:image/png;base64,...);"
                                " kinema does not fetch remote URLs", param="input_reference", code="invalid_value")
        try:
            data = base64.b64decode(match["data"], validate=True)
        except (binascii.Error, ValueError):
            raise APIError(400, "input_reference.image_url is not valid base64", param="input_reference",
                           code="invalid_value") from None
    else:
        return None
    if len(data) > MAX_IMAGE_BYTES:
        raise APIError(413, f"input_reference is larger than {MAX_IMAGE_BYTES // 2**20} MiB", param="input_reference",
                       code="image_too_large")
    return await run_in_threadpool(decode_image, data)


def decode_image(data: bytes) -> Any:
    """Validate and decode image bytes: format allow-list and size checked before any pixel is decoded."""
    import numpy as np
    from PIL import Image, ImageOps

    def bad(reason: str) -> APIError:
        return APIError(400, f"input_reference {reason}", param="input_reference", code="invalid_image")

    try:
        with Image.open(io.BytesIO(data), formats=list(IMAGE_FORMATS)) as image:
            width, height = image.size
            if max(width, height) > MAX_IMAGE_SIDE:
                raise bad(f"is {width}x{height}; keep each side at most {MAX_IMAGE_SIDE} px")
            image.load()
            image = ImageOps.exif_transpose(image)
            has_alpha = "A" in image.getbands() or "transparency" in image.info
            pixels = np.asarray(image.convert("RGBA" if has_alpha else "RGB"))
    except APIError:
        raise
    except Exception as error:  # Pillow raises many kinds for hostile files
        raise bad(f"is not a readable PNG, JPEG or WebP image ({type(error).__name__})") from None
    if pixels.shape[-1] == 4:  # flatten transparency onto white
        rgb, alpha = pixels[..., :3].astype(np.uint16), pixels[..., 3:].astype(np.uint16)
        pixels = ((rgb * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)
    return np.ascontiguousarray(pixels, dtype=np.uint8)


_SIZE = re.compile(r"\s*(\d{1,5})\s*[x×]\s*(\d{1,5})\s*", re.IGNORECASE)


def _parse_size(size: Optional[str]) -> tuple[Optional[int], Optional[int]]:
    if size is None:
        return None, None
    match = _SIZE.fullmatch(size)
    if match is None:
        raise APIError(400, f"size must be WIDTHxHEIGHT like '768x512', got {size[:32]!r}", param="size",
                       code="invalid_value")
    return int(match[1]), int(match[2])


def _parse_seconds(seconds: Union[str, float, None]) -> Optional[float]:
    if seconds is None:
        return None
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        value = float("nan")
    if value != value or value in (float("inf"), float("-inf")):
        raise APIError(400, f"seconds must be a number like '4', got {str(seconds)[:32]!r}", param="seconds",
                       code="invalid_value")
    return value


def _resolve_model(model: Optional[str], backend: Optional[str], default_backend: str) -> tuple[str, Optional[str], str]:
    """(backend, model id or None, name shown to clients) from OpenAI's ``model`` and kinema's ``backend``.

    ``model`` may name a backend or alias, a model pulled with ``kinema models pull``,
    or ``sora-*`` (the server's default backend). Never a path: requests cannot
    make the server read arbitrary folders.
    """
    from . import models as model_store
    from .engine import get_backends

    backends = get_backends()
    if backend is not None and backend not in backends:
        raise APIError(404, f"unknown backend {backend[:64]!r}; choose one of: {', '.join(sorted(_names(backends)))}",
                       param="backend", code="model_not_found")
    if not model or model.startswith(OPENAI_MODEL_PREFIX):
        chosen = backend or default_backend
        return chosen, None, backends[chosen].name if chosen in backends else chosen
    if model in backends:
        if backend is not None and backends[backend] is not backends[model]:
            raise APIError(400, f"model {model!r} and backend {backend!r} disagree; send one of them", param="backend",
                           code="invalid_value")
        return model, None, backends[model].name
    if model_store.is_hub_id(model) and model in model_store.pulled():
        if backend is None:
            lowered = model.lower()
            backend = "ltx2" if "ltx" in lowered else "wan" if "wan" in lowered else None
            if backend is None or backend not in backends:
                raise APIError(400, f"say which backend runs {model!r} with the 'backend' field", param="backend",
                               code="invalid_value")
        return backend, model, model
    raise UnknownBackendError(
        f"unknown model {model[:64]!r}; use a backend ({', '.join(sorted(_names(backends)))}) or a model pulled"
        " with `kinema models pull` (see GET /v1/models)"
    )


def _names(backends: dict) -> set[str]:
    return {b.name for b in backends.values()}


def _model_list() -> list[dict]:
    from . import models as model_store
    from .engine import get_backends

    registry = get_backends()
    aliases: dict[int, list[str]] = {}
    for name, backend in registry.items():
        aliases.setdefault(id(backend), []).append(name)
    rows, seen = [], set()
    for backend in registry.values():
        if id(backend) in seen:
            continue
        seen.add(id(backend))
        try:
            status = backend.status()
            ready, detail = status.ready, status.detail
        except Exception as error:  # a broken plugin must not break the list
            ready, detail = False, f"status failed: {type(error).__name__}: {error}"
        rows.append({"id": backend.name, "backend": backend.name, "ready": ready, "detail": detail,
                     "description": backend.description, "aliases": aliases[id(backend)][1:]})
    with contextlib.suppress(Exception):
        for model in model_store.pulled():
            lowered = model.lower()
            family = "ltx2" if "ltx" in lowered else "wan" if "wan" in lowered else ""
            rows.append({"id": model, "backend": family, "ready": True, "detail": "downloaded",
                         "description": "a model pulled with `kinema models pull`", "aliases": []})
    return rows


# --------------------------------------------------------------------------- running


def serve(host: str = "127.0.0.1", port: int = DEFAULT_PORT, *, api_key: Optional[str] = None,
          default_backend: str = "tiny", log_level: str = "info", on_ready: Any = None,
          stop_with_stdin: bool = False) -> None:
    """Bind, then serve until interrupted. ``port=0`` picks a free port; ``on_ready(url)`` runs once serving.

    ``stop_with_stdin``: also stop, as on Ctrl-C, when standard input reaches end of file. A host that
    starts the server keeps the other end of that pipe; the OS closes it when the host exits, however it
    exits (a crash or a kill included), so the server never outlives the program that owns it.
    """
    import uvicorn

    check_bind(host, api_key)
    from .home import kinema_home
    from .jobs import _lock_directory

    jobs_dir = kinema_home() / "jobs"
    jobs_dir.mkdir(parents=True, exist_ok=True)
    _lock_directory(jobs_dir).close()  # fail early and clearly if another server owns the data directory
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as error:
        sock.close()
        raise KinemaError(f"cannot listen on {host}:{port}: {error.strerror or error}; pick another --port") from None
    bound_port = sock.getsockname()[1]
    shown = f"[{host.strip('[]')}]" if family == socket.AF_INET6 else host
    url = f"http://{shown}:{bound_port}"
    app = create_app(api_key=api_key, default_backend=default_backend)
    config = uvicorn.Config(app, log_level=log_level, access_log=False, timeout_graceful_shutdown=5,
                            lifespan="on")

    class _Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if self.started and stop_with_stdin:
                threading.Thread(target=self._stop_at_end_of_stdin, name="kinema-stdin-watch", daemon=True).start()
            if self.started and on_ready is not None:
                on_ready(url)

        def _stop_at_end_of_stdin(self) -> None:
            try:
                while os.read(0, 4096):
                    pass
            except OSError:
                pass  # an unreadable stdin also means nobody is holding it for us
            logging.getLogger("uvicorn.error").info("standard input closed (the program that started this server quit); stopping")
            self.should_exit = True

    server = _Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    if not server.started:
        raise KinemaError("the server did not start; see the messages above")


__all__ = ["APIError", "JobsBusyError", "create_app", "check_bind", "is_loopback", "serve", "to_video"]
