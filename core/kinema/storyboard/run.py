"""Making the film: every shot generated (or taken from the cache), trimmed to its plan and joined with crossfaded sound."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from kinema import engine
from kinema.cameo.store import authorize_request
from kinema.clip import Clip, fit_audio
from kinema.errors import InvalidRequestError
from kinema.media.assemble import Piece, join
from kinema.progress import CancelToken, Progress
from kinema.request import GenerationRequest
from kinema.storyboard.cache import ShotCache, cache_key
from kinema.storyboard.model import Storyboard, StoryboardError
from kinema.storyboard.plan import ShotPlan, plan_storyboard, shot_request
from kinema.version import __version__


@dataclass
class ShotResult:
    plan: ShotPlan
    clip: Any  # kinema.Clip: the kept frames and their sound
    generated: Any  # kinema.Clip: everything the backend made (the spare sound feeds the crossfades)
    cached: bool
    request: Any  # the GenerationRequest that made it
    conditioning: np.ndarray | None = None  # the first frame it was given (continue shots: the previous last frame)


@dataclass
class StoryboardResult:
    film: Any  # kinema.Clip
    shots: list[ShotResult] = field(default_factory=list)

    @property
    def regenerated(self) -> list[int]:
        """1-based numbers of the shots that were generated (not taken from the cache)."""
        return [r.plan.index + 1 for r in self.shots if not r.cached]


def run_storyboard(
    board: Storyboard,
    *,
    progress: Callable[[Any], None] | None = None,
    cancel: Any = None,
    cache: bool = True,
    backend: Any = None,
    on_shot: Callable[[ShotResult], None] | None = None,
    user: str | None = None,
    start_image: np.ndarray | None = None,
    preview: bool = False,
) -> StoryboardResult:
    """Make every shot (or take it from the cache) and assemble the film.

    ``progress`` gets ``Progress`` events whose stage names the shot
    ("shot 2/3 video"); ``cancel`` stops within one step; ``on_shot`` is called
    as each shot is ready. ``user`` is who asks (for cameo consent; None is the
    local user). ``start_image`` (uint8 [H, W, 3]) is the first shot's first
    frame, unless that shot names an image of its own. ``preview=True`` adds a small RGB
    preview of each step to the events (``engine.generate``), for hosts with a live view.
    """
    backend = backend or engine.resolve_backend(
        GenerationRequest("storyboard", backend=board.backend, model=board.model)
    )
    plans = plan_storyboard(board, backend)
    cancel = cancel or CancelToken()
    store = ShotCache() if cache else None
    started = time.time()
    results: list[ShotResult] = []
    previous_last: np.ndarray | None = None
    done_steps = 0
    per_shot = board.steps or backend.defaults.steps  # a first guess at each shot's steps, corrected by its events
    for plan in plans:
        cancel.raise_if_cancelled()
        conditioning = previous_last if plan.shot.cut == "continue" else None
        if plan.index == 0 and start_image is not None and plan.shot.image is None:
            conditioning = start_image
        request = shot_request(board, plan, conditioning, user)
        key = cache_key(request, backend)
        clip = store.get(key) if store else None
        if clip is not None and request.cameos:
            authorize_request(request)  # consent is asked again: a cached likeness is still a likeness
        cached = clip is not None
        if clip is None:
            remaining = len(plans) - plan.index - 1
            seen = {"total": per_shot}

            def on_progress(event, _plan=plan, _remaining=remaining, _seen=seen, _done=done_steps):
                _seen["total"] = event.total
                if progress is not None:
                    progress(
                        Progress(
                            step=_done + event.step,
                            total=_done + event.total * (1 + _remaining),
                            stage=f"shot {_plan.index + 1}/{len(plans)} {event.stage}",
                            preview=event.preview,
                        )
                    )

            try:
                clip = engine.generate(request, progress=on_progress, cancel=cancel, backend=backend, preview=preview)
            except InvalidRequestError as error:
                raise StoryboardError(board.source, [(plan.shot.line, f"shot {plan.index + 1}: {error}")]) from None
            done_steps += seen["total"]
            per_shot = seen["total"]
            if store:
                store.put(key, clip)
        if clip.frame_count < plan.head + plan.frames:
            raise InvalidRequestError(
                f"shot {plan.index + 1}: backend {backend.name!r} made {clip.frame_count} frames"
                f" where {plan.generated} were planned"
            )
        result = ShotResult(plan, _kept_clip(clip, plan), clip, cached, request, conditioning)
        results.append(result)
        previous_last = result.clip.frames[-1]
        if on_shot is not None:
            on_shot(result)

    sample_rate = next((r.generated.sample_rate for r in results if r.generated.sample_rate), None)
    pieces = [
        Piece(r.clip.frames, r.generated.audio, round(Fraction(r.plan.head) * (sample_rate or 0) / r.plan.fps))
        for r in results
    ]
    frames, audio = join(pieces, plans[0].fps, sample_rate)
    metadata = {
        "kind": "storyboard",
        "title": board.title,
        "prompt": board.title or " / ".join(p.shot.prompt for p in plans)[:1000],
        "world": dataclasses.asdict(board.world),
        "seed": board.seed,
        "tier": board.tier,
        "backend": backend.name,
        "model": backend.model_id,
        "width": int(frames.shape[2]),
        "height": int(frames.shape[1]),
        "num_frames": int(frames.shape[0]),
        "fps": str(plans[0].fps),
        "audio": audio is not None,
        "kinema_version": __version__,
        "created_at": int(started),
        "generation_seconds": round(time.time() - started, 3),
        "shots": [_shot_metadata(r) for r in results],
    }
    film = Clip(frames, plans[0].fps, audio, sample_rate if audio is not None else None, metadata)
    return StoryboardResult(film, results)


def _kept_clip(clip: Any, plan: ShotPlan) -> Any:
    """The frames the shot keeps, with exactly their sound."""
    frames = clip.frames[plan.head : plan.head + plan.frames]
    audio = None
    if clip.audio is not None:
        start = round(Fraction(plan.head) * clip.sample_rate / plan.fps)
        audio = fit_audio(clip.audio[:, start:], clip.sample_rate, plan.frames, plan.fps)
    kept = Clip(frames, plan.fps, audio, clip.sample_rate if audio is not None else None, dict(clip.metadata))
    kept.metadata.update({"num_frames": plan.frames, "generated_frames": clip.frame_count})
    return kept


def _shot_metadata(result: ShotResult) -> dict:
    plan = result.plan
    notes = []
    if plan.generated != plan.frames:
        notes.append(
            f"generated {plan.generated} frames, kept {plan.frames} ({plan.seconds:.3f} s) from frame {plan.head}"
        )
    return {
        "shot": plan.index + 1,
        "line": plan.shot.line,
        "prompt": plan.shot.prompt,
        "full_prompt": result.clip.metadata.get("prompt", plan.prompt),
        "cut": plan.shot.cut,
        "camera": plan.shot.camera,
        "dialogue": [dataclasses.asdict(line) for line in plan.shot.dialogue],
        "cameos": list(plan.shot.cameos),
        # The shot's entry in its cameos' use logs: the film is logged where it is saved, and can be taken down.
        "cameo_use": result.generated.metadata.get("cameo_use"),
        "style": plan.style,
        "seed": plan.seed,
        "start": round(plan.start, 6),
        "seconds": round(plan.seconds, 6),
        "frames": plan.frames,
        "generated_frames": plan.generated,
        "cached": result.cached,
        "notes": notes + list(result.clip.metadata.get("notes", [])),
    }
