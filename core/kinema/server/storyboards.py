"""The server's storyboard endpoint (``POST /v1/storyboards``): one film from a storyboard's shots.

The storyboard is parsed here so a bad one fails with 400 at once; the job's
worker runs it with ``kinema.storyboard``, like a remix or extend.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from kinema.request import DEFAULT_BACKEND
from kinema.server.dependencies import default_backend, job_manager
from kinema.server.errors import error_responses
from kinema.server.jobs import JobManager
from kinema.server.schemas import StoryboardCreateParams, Video
from kinema.server.video_requests import check_style, parse_size, queue_follow_up
from kinema.storyboard import from_dict, parse_storyboard

router = APIRouter()


@router.post("/storyboards", response_model=Video, tags=["videos"], responses=error_responses(403, 409))
async def create_storyboard(
    params: StoryboardCreateParams,
    request: Request,
    manager: JobManager = Depends(job_manager),
    backend_default: str = Depends(default_backend),
) -> dict:
    """A video made from a storyboard's shots, with cuts, continuity and crossfaded sound (kinema)."""
    width, height = parse_size(params.size)
    overrides: dict[str, Any] = {
        k: v
        for k, v in {
            "width": width,
            "height": height,
            "fps": params.fps,
            "steps": params.steps,
            "guidance": params.guidance,
            "audio": params.audio,
        }.items()
        if v is not None
    }
    if params.style:
        await run_in_threadpool(check_style, params.style)  # 404 for an unknown one, as for a video
        overrides["world_style"] = params.style
    if params.tier is not None:
        overrides["tier"] = params.tier
    task: dict[str, Any] = {
        "kind": "storyboard",
        "storyboard": params.storyboard,
        "format": params.format,
        "overrides": overrides,
    }
    if params.seed is not None:
        task["seed"] = params.seed
    board = await run_in_threadpool(
        lambda: (
            parse_storyboard(params.storyboard, format=params.format, source="storyboard", files=False)
            if isinstance(params.storyboard, str)
            else from_dict(params.storyboard, source="storyboard", files=False)
        )
    )
    title = board.title or board.shots[0].prompt
    # The style is the film's, applied per shot; the tier is the request's, else the storyboard's own.
    shared = params.model_copy(update={"style": None, "tier": params.tier or board.tier})
    # A storyboard that names its backend is made (and described) on it; else on the server's default.
    backend = board.backend if board.backend != DEFAULT_BACKEND else backend_default
    return await queue_follow_up(
        manager,
        backend,
        shared,
        title,
        task,
        extra={"audio": board.audio if params.audio is None else params.audio},
        owner=request.state.kinema_user,
    )
