"""The server's video endpoints: OpenAI's create, list, retrieve, content, delete and remix, and kinema's
extend, cancel, provenance and server-sent events.

Routes check a request completely before queueing it, so a bad one fails with
400 at once; the queued job runs in ``kinema.server.jobs``. Jobs are the caller's: the
server's ``owned_jobs_only`` answers 404 before any route here sees another
user's ``{video_id}``, and lists show only the caller's jobs.
"""

from __future__ import annotations

import asyncio
import json
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from pydantic import ValidationError

from kinema.server.dependencies import cameo_store, default_backend, job_manager
from kinema.server.errors import APIError, error_responses, validation_response, video_not_found
from kinema.server.hosted import is_hosted
from kinema.server.jobs import SPRITESHEET_FILE, TERMINAL, THUMBNAIL_FILE, VIDEO_FILE, Event, JobManager, is_valid_id
from kinema.server.openai_videos import characters_in
from kinema.server.openai_videos import router as openai_router
from kinema.server.schemas import (
    VIDEO_ID_PATTERN,
    Video,
    VideoCreateParams,
    VideoDeleted,
    VideoExtendParams,
    VideoList,
    VideoRemixParams,
    public_status,
    to_video,
)
from kinema.server.storyboards import router as storyboard_router
from kinema.server.video_requests import (
    cameo_fields,
    check_style,
    check_text,
    fit_hosted,
    parse_seconds,
    parse_size,
    queue_follow_up,
    read_create_body,
    read_image,
    resolve_model,
)
from kinema.tiers import DEFAULT_TIER

AFTER_PATTERN = f"^(?:{VIDEO_ID_PATTERN[1:-1]})?$"  # a video id, or empty (as if not given)
SSE_KEEPALIVE_SECONDS = 15.0
POLL_AFTER_MS = 500  # tells the openai SDK's poll() how often to ask
_FINAL_EVENTS = frozenset(TERMINAL | {"deleted"})


# One server-sent event (Open API 3.1: the schema of a text/event-stream describes each event); data is JSON.
EVENT_SCHEMA = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"type": "string", "enum": ["video", "progress", *sorted(_FINAL_EVENTS)]},
        "data": {"type": "string", "contentMediaType": "application/json"},
        "id": {"type": "string"},
    },
}


router = APIRouter()
Manager = Depends(job_manager)
DefaultBackend = Depends(default_backend)


def lookup(manager: JobManager, video_id: str) -> dict:
    """The job (the caller's: ``owned_jobs_only`` checked it), unless it went meanwhile."""
    record = manager.get(video_id)
    if record is None:
        raise video_not_found(video_id)
    return record


def finished(manager: JobManager, video_id: str) -> dict:
    """The job, if it completed: only a completed video can be remixed or extended."""
    record = lookup(manager, video_id)
    if record["status"] != "completed":
        raise APIError(
            409,
            f"video {video_id!r} is {record['status']}; only a completed video can be remixed or extended",
            param="video_id",
            code="video_not_ready",
        )
    return record


@router.post(
    "/videos",
    response_model=Video,
    tags=["videos"],
    responses=error_responses(409, 413),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/VideoCreateParams"}},
                "multipart/form-data": {
                    "schema": {"$ref": "#/components/schemas/VideoCreateForm"},
                    "encoding": {"input_reference": {"contentType": "image/png, image/jpeg, image/webp"}},
                },
            },
        }
    },
)
async def create_video(
    request: Request, manager: JobManager = Manager, backend_default: str = DefaultBackend
) -> dict | JSONResponse:
    """Queue a video job (OpenAI ``videos.create``). Bad requests fail here with 400, not as failed jobs."""
    fields, upload = await read_create_body(request)
    # OpenAI's characters (kinema's cameos): by id in extra_body, or @name in the prompt.
    characters = await run_in_threadpool(characters_in, fields, cameo_store(), request.state.kinema_user)
    try:
        params = VideoCreateParams.model_validate(fields)
    except ValidationError as error:
        return validation_response(error.errors(), prefix=())
    check_text(params)
    await run_in_threadpool(check_style, params.style)
    image = await read_image(upload, params.input_reference, request.state.kinema_user)
    backend, model, display = await run_in_threadpool(resolve_model, params.model, params.backend, backend_default)
    width, height = parse_size(params.size)
    seconds, tier = parse_seconds(params.seconds), params.tier
    notes: tuple[str, ...] = ()
    if params.model is not None and is_hosted(params.model):  # the hosted API's values, as this backend makes them
        fitted = await run_in_threadpool(
            fit_hosted,
            params.model,
            backend,
            backend_default,
            width=width,
            height=height,
            seconds=seconds,
            fps=params.fps,
        )
        width, height, seconds, notes = fitted.width, fitted.height, fitted.seconds, fitted.notes
        tier = tier or fitted.tier
    request_fields = {
        "prompt": params.prompt,
        "negative_prompt": params.negative_prompt or "",
        "seconds": seconds,
        "fps": params.fps,
        "width": width,
        "height": height,
        "seed": params.seed,
        "steps": params.steps,
        "guidance": params.guidance,
        "style": params.style,
        "tier": tier or DEFAULT_TIER,
        "two_stage": params.two_stage,
        "audio": True if params.audio is None else params.audio,
        "backend": backend,
        "model": model,
        **cameo_fields(params, characters),
    }
    record = await run_in_threadpool(
        manager.submit, request_fields, image=image, display_model=display, owner=request.state.kinema_user, notes=notes
    )
    return to_video(record)


@router.post("/videos/{video_id}/remix", response_model=Video, tags=["videos"], responses=error_responses(409))
async def remix_video(
    video_id: str,
    params: VideoRemixParams,
    request: Request,
    manager: JobManager = Manager,
    backend_default: str = DefaultBackend,
) -> dict:
    """A new video: the source redone for a new prompt (OpenAI ``videos.remix``); ``strength`` says how far."""
    parent = finished(manager, video_id)
    task = {"kind": "remix", "parent": video_id, "strength": params.strength, "keep_audio": params.keep_audio}
    return await queue_follow_up(
        manager, backend_default, params, params.prompt, task, parent, owner=request.state.kinema_user
    )


@router.post("/videos/{video_id}/extend", response_model=Video, tags=["videos"], responses=error_responses(409))
async def extend_video(
    video_id: str,
    params: VideoExtendParams,
    request: Request,
    manager: JobManager = Manager,
    backend_default: str = DefaultBackend,
) -> dict:
    """A new video: the source plus ``seconds`` more, continued from its last frames (kinema)."""
    parent = finished(manager, video_id)
    task = {
        "kind": "extend",
        "parent": video_id,
        "seconds": parse_seconds(params.seconds),
        "prompt_given": params.prompt is not None,
    }
    prompt = params.prompt or parent["prompt"]
    return await queue_follow_up(
        manager, backend_default, params, prompt, task, parent, owner=request.state.kinema_user
    )


# Here, not after the other routes, so /v1/storyboards keeps its place in the published API.
router.include_router(storyboard_router)
router.include_router(openai_router)  # OpenAI's edits and extensions


@router.get("/videos", response_model=VideoList, tags=["videos"], responses=error_responses())
def list_videos(
    request: Request,
    after: str | None = Query(
        None, pattern=AFTER_PATTERN, description="Last id of the previous page; empty: the first page."
    ),
    limit: int = Query(20, ge=1, le=100),
    order: Literal["asc", "desc"] = Query("desc", description="By submission time."),
    manager: JobManager = Manager,
) -> dict:
    """Your jobs (all of them for the server's owner), newest first by default (OpenAI ``videos.list``)."""
    try:
        records, has_more = manager.list(
            caller=request.state.kinema_user, limit=limit, after=after or None, order=order
        )
    except KeyError:
        raise APIError(404, f"after: no video with id {str(after)[:64]!r}", param="after", code="not_found") from None
    data = [to_video(r) for r in records]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


@router.get("/videos/{video_id}", response_model=Video, tags=["videos"], responses=error_responses())
def get_video(video_id: str, manager: JobManager = Manager) -> JSONResponse:
    """One job (OpenAI ``videos.retrieve``)."""
    record = lookup(manager, video_id)
    headers = {} if record["status"] in TERMINAL else {"openai-poll-after-ms": str(POLL_AFTER_MS)}
    return JSONResponse(Video.model_validate(to_video(record)).model_dump(mode="json"), headers=headers)


@router.get(
    "/videos/{video_id}/content",
    tags=["videos"],
    response_class=FileResponse,
    responses={
        **error_responses(409),
        200: {
            "content": {
                "video/mp4": {"schema": {"type": "string", "format": "binary"}},
                "image/png": {"schema": {"type": "string", "format": "binary"}},
                "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            }
        },
    },
)
def download_content(
    video_id: str,
    variant: Literal["video", "thumbnail", "spritesheet"] = Query("video"),
    manager: JobManager = Manager,
) -> FileResponse:
    """The MP4 (H.264 + AAC), ``variant=thumbnail`` for a PNG of the middle frame, or ``variant=spritesheet`` for
    a JPEG grid of 16 evenly spaced frames, 4 across (OpenAI ``download_content``)."""
    record = lookup(manager, video_id)
    if record["status"] != "completed":
        raise APIError(
            409,
            f"video {video_id} is {public_status(record)}, not completed; nothing to download yet",
            code="not_ready",
        )
    name, media_type, suffix = {
        "video": (VIDEO_FILE, "video/mp4", "mp4"),
        "thumbnail": (THUMBNAIL_FILE, "image/png", "png"),
        "spritesheet": (SPRITESHEET_FILE, "image/jpeg", "jpg"),
    }[variant]
    path = manager.artifact(video_id, name)
    if path is None:
        raise APIError(404, f"video {video_id} has no {variant} file any more", code="not_found")
    return FileResponse(path, media_type=media_type, filename=f"{video_id}.{suffix}")


@router.get("/videos/{video_id}/provenance", tags=["kinema"], responses=error_responses(409))
def video_provenance(video_id: str, manager: JobManager = Manager) -> dict:
    """``kinema verify`` for a finished video: C2PA manifest and why it is (in)valid, signer, generator,
    cameos, parents, and the invisible watermark's payload."""
    from kinema.media.provenance import verify

    record = lookup(manager, video_id)
    if record["status"] != "completed":
        raise APIError(
            409,
            f"video {video_id} is {public_status(record)}, not completed; nothing to check yet",
            code="not_ready",
        )
    path = manager.artifact(video_id, VIDEO_FILE)
    if path is None:
        raise APIError(404, f"video {video_id} has no video file any more", code="not_found")
    report = verify(path).to_dict()
    report.pop("path", None)  # server paths stay private
    return {"id": video_id, **report}


@router.delete("/videos/{video_id}", response_model=VideoDeleted, tags=["videos"], responses=error_responses())
async def delete_video(video_id: str, manager: JobManager = Manager) -> dict:
    """Delete a job and its files (OpenAI ``videos.delete``). It answers at once: a running job is gone for
    clients now, and is cancelled and its files removed when it stops (within one step)."""
    if await run_in_threadpool(manager.delete, video_id) == "missing":
        raise video_not_found(video_id)
    return {"id": video_id, "object": "video.deleted", "deleted": True}


@router.post("/videos/{video_id}/cancel", response_model=Video, tags=["kinema"], responses=error_responses(409))
def cancel_video(video_id: str, manager: JobManager = Manager) -> dict:
    """Cancel a queued job at once, or a running one within one step (kinema extension).

    A running job may still read ``in_progress`` (with ``kinema.cancel_requested``) for one step.
    """
    record = lookup(manager, video_id)
    if record["status"] in ("completed", "failed"):
        raise APIError(409, f"video {video_id} already {record['status']}; nothing to cancel", code="already_final")
    return to_video(manager.cancel(video_id) or record)


@router.get(
    "/videos/{video_id}/events",
    tags=["kinema"],
    response_class=StreamingResponse,
    responses={
        **error_responses(),
        200: {"description": "Server-sent events", "content": {"text/event-stream": {"schema": EVENT_SCHEMA}}},
    },
)
async def video_events(video_id: str, manager: JobManager = Manager) -> StreamingResponse:
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
        raise video_not_found(video_id)
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

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


def _format_event(event: Event) -> str:
    data = event.data
    if event.name in ("video", *TERMINAL):
        data = to_video(data)
    lines = [f"id: {event.seq}"] if event.seq else []
    lines += [f"event: {event.name}", f"data: {json.dumps(data, separators=(',', ':'))}"]
    return "\n".join(lines) + "\n\n"
