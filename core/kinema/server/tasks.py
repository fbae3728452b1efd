"""Jobs that are more than one generation: remix, extend and storyboard, as the job server runs them.

A task is a small JSON-able dict stored with the job (in its plan), checked when
the job is submitted (so a bad storyboard is a 400 with line numbers, not a
failed job) and run by the job's worker in place of a single ``generate``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from kinema.errors import InvalidRequestError
from kinema.extend import ExtendRequest, extend, plan_extension
from kinema.media.files import probe
from kinema.remix import RemixRequest, remix, remix_frames
from kinema.request import check_seconds
from kinema.storyboard import from_dict, parse_storyboard, plan_storyboard, run_storyboard, shot_request
from kinema.styles import get_style

KINDS = ("remix", "extend", "storyboard")
ParentLookup = Callable[[str], Path | None]  # a finished job's id -> its MP4, or None
# A remix or extend of a video the client uploaded (OpenAI's edits and extensions): ``parent`` is this, not an id,
# and the job keeps the upload in its own folder (``kinema.server.jobs.SOURCE_FILE``).
UPLOADED = "upload"


def source_id(task: dict) -> str | None:
    """The id of the server's video a remix or extend builds on; None for an uploaded one (and storyboards)."""
    parent = task.get("parent")
    return parent if isinstance(parent, str) and parent != UPLOADED else None


def prepare(task: dict, request: Any, backend: Any, parent_video: ParentLookup) -> tuple[dict, dict]:
    """Check ``task`` for ``request`` on ``backend``; returns (the task to store, what the job's plan shows).

    Every generation the task will run is planned here, so one beyond the backend's limits (kinema.backends.limits)
    is refused now, not as a failed job.
    """
    kind = task.get("kind")
    if kind not in KINDS:
        raise InvalidRequestError(f"unknown task {kind!r}; one of {', '.join(KINDS)}")
    if kind in ("remix", "extend"):
        parent = task.get("parent")
        path = parent_video(parent) if isinstance(parent, str) else None
        if path is None:
            raise InvalidRequestError(f"video {parent!r} has no finished clip to {kind}")
        info = probe(path)
        if kind == "remix":
            if not backend.supports_remix:
                raise InvalidRequestError(
                    f"backend {backend.name!r} cannot remix a video; pick one that can (tiny, ltx2, tiny-wan, wan)"
                )
            strength = task.get("strength", 0.6)
            if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0 < strength <= 1:
                raise InvalidRequestError(f"strength must be a number in (0, 1], got {strength!r}")
            _plan_generation(request, backend, remix_frames(info.frame_count, backend), info)
            stored = {
                "kind": kind,
                "parent": parent,
                "strength": float(strength),
                "keep_audio": bool(task.get("keep_audio")),
            }
            return stored, {
                "num_frames": info.frame_count,
                "seconds": info.video_duration,
                "fps": str(info.fps),
                "width": info.width,
                "height": info.height,
            }
        seconds = task.get("seconds")
        seconds = check_seconds(seconds, name="seconds to add", required=True)
        if not backend.supports_image:
            raise InvalidRequestError(f"backend {backend.name!r} cannot start from frames, so it cannot extend a clip")
        _context, added, generated = plan_extension(
            info.frame_count, info.fps, info.width, info.height, seconds, backend
        )
        _plan_generation(request, backend, generated, info)
        stored = {
            "kind": kind,
            "parent": parent,
            "seconds": float(seconds),
            "prompt_given": bool(task.get("prompt_given", True)),
        }
        return stored, {
            "num_frames": info.frame_count + added,
            "seconds": float((info.frame_count + added) / info.fps),
            "fps": str(info.fps),
            "width": info.width,
            "height": info.height,
        }
    board = _board(task, request)
    plans = plan_storyboard(board, backend)
    frames = sum(p.frames for p in plans)
    first = backend.plan(shot_request(board, plans[0], None))  # every shot has the film's size
    stored = {
        "kind": kind,
        "storyboard": task["storyboard"],
        "format": task.get("format", "auto"),
        "seed": board.seed,
        "overrides": task.get("overrides", {}),
    }
    return stored, {
        "num_frames": frames,
        "seconds": float(frames / plans[0].fps),
        "fps": str(plans[0].fps),
        "width": first.width,
        "height": first.height,
        "shots": len(plans),
        "seed": board.seed,
    }


def _plan_generation(request: Any, backend: Any, frames: int, info: Any) -> None:
    """Plan (and so check) the generation a remix or extend of the clip ``info`` describes runs."""
    backend.plan(
        request.with_(seconds=float(frames / info.fps), fps=float(info.fps), width=info.width, height=info.height)
    )


def _board(task: dict, request: Any) -> Any:
    text = task.get("storyboard")
    if isinstance(text, str):
        board = parse_storyboard(text, format=task.get("format", "auto"), source="storyboard", files=False)
    elif isinstance(text, dict):
        board = from_dict(text, source="storyboard", files=False)
    else:
        raise InvalidRequestError("storyboard must be text (shot lines, YAML or JSON) or an object with 'shots'")
    overrides = dict(task.get("overrides") or {})
    overrides["backend"], overrides["model"] = request.backend, request.model
    if "seed" in task:
        overrides["seed"] = task["seed"]
    style = overrides.pop("world_style", None)
    if style:
        import dataclasses

        get_style(style)
        overrides["world"] = dataclasses.replace(board.world, style=style)
    return board.with_(**overrides)


def run(
    task: dict,
    request: Any,
    backend: Any,
    *,
    parent_video: ParentLookup,
    progress: Callable[[Any], None] | None = None,
    cancel: Any = None,
    run_chains: Any = None,
) -> Any:
    """Make the task's clip (a kinema.Clip). ``run_chains``: how a storyboard's independent chains of shots run
    (``kinema.storyboard.run.ChainRunner``; one after another here by default)."""
    kind = task["kind"]
    if kind in ("remix", "extend"):
        path = parent_video(task["parent"])
        if path is None:
            raise InvalidRequestError(f"video {task['parent']!r} was deleted before this {kind} could run")
        if kind == "remix":
            remixing = RemixRequest(
                path,
                request.prompt,
                strength=task["strength"],
                keep_audio=task["keep_audio"],
                negative_prompt=request.negative_prompt,
                style=request.style,
                seed=request.seed,
                steps=request.steps,
                guidance=request.guidance,
                tier=request.tier,
                video_id=source_id(task),
            )
            return remix(remixing, backend_obj=backend, progress=progress, cancel=cancel)
        extending = ExtendRequest(
            path,
            task["seconds"],
            prompt=request.prompt if task.get("prompt_given") else None,
            negative_prompt=request.negative_prompt or None,
            style=request.style,
            seed=request.seed,
            steps=request.steps,
            guidance=request.guidance,
            tier=request.tier,
            video_id=source_id(task),
        )
        return extend(extending, backend_obj=backend, progress=progress, cancel=cancel)
    return run_storyboard(
        _board(task, request),
        backend=backend,
        progress=progress,
        cancel=cancel,
        user=getattr(request, "user", None),
        run_chains=run_chains,
    ).film
