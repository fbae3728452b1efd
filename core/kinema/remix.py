"""Remix a clip: the same shot redone with a new prompt, keeping as much of the original as ``strength`` says."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kinema import engine
from kinema.backends.base import DEFAULT_STRENGTH, fit_frame_count
from kinema.clip import Clip, fit_audio
from kinema.errors import InvalidRequestError
from kinema.lineage import Source, open_source, pick_backend, pick_tier, resize_frames
from kinema.request import GenerationRequest


@dataclass(frozen=True)
class RemixRequest:
    """What to remix and how: ``source`` (a Clip or an MP4 path) redone to follow ``prompt``.

    ``None`` means "as the clip was made" for ``backend``, ``model`` and ``tier``, and the backend's default
    for ``seed``, ``steps`` and ``guidance``. ``video_id`` names the server job the clip came from, for the
    result's lineage.
    """

    source: Source
    prompt: str
    strength: float = DEFAULT_STRENGTH
    negative_prompt: str = ""
    style: str | None = None
    seed: int | None = None
    steps: int | None = None
    guidance: float | None = None
    tier: str | None = None
    keep_audio: bool = False
    backend: str | None = None
    model: str | None = None
    video_id: str | None = None
    loras: tuple = ()  # (safetensors path, weight) pairs loaded for the new part, as GenerationRequest.loras


def remix(
    request: RemixRequest,
    *,
    progress: Callable[[Any], None] | None = None,
    cancel: Any = None,
    backend_obj: Any = None,
    preview: bool = False,
) -> Any:
    """A new Clip like ``request.source`` (a Clip or an MP4 path) but following ``request.prompt``.

    ``strength`` runs from near 0 (almost the original) to 1 (only the prompt
    counts). Video-to-video runs on backends that can (LTX-2: the source as
    conditioning frames at ``1 - strength``; Wan: ``WanVideoToVideoPipeline``).
    The sound is made anew for the new prompt unless ``keep_audio``. Same
    length, frame rate and size as the source; ``backend`` and ``tier``
    default to the ones that made it; ``parent`` in the metadata names the source.
    ``preview=True`` adds a small RGB preview of each step to the progress events.
    """
    clip, parent = open_source(request.source, video_id=request.video_id)
    prompt, strength, keep_audio = request.prompt, request.strength, request.keep_audio
    backend, model = pick_backend(clip, request.backend, request.model)
    tier = pick_tier(clip, request.tier)
    chosen = backend_obj or engine.resolve_backend(GenerationRequest(prompt, backend=backend, model=model, tier=tier))
    if not chosen.supports_remix:
        raise InvalidRequestError(
            f"backend {chosen.name!r} cannot remix a video; pick one that can (tiny, ltx2, tiny-wan, wan)"
        )
    count = clip.frame_count
    generated = remix_frames(count, chosen)
    generation = GenerationRequest(
        prompt=prompt,
        negative_prompt=request.negative_prompt,
        seconds=float(generated / clip.fps),
        fps=float(clip.fps),
        width=clip.width,
        height=clip.height,
        seed=request.seed,
        steps=request.steps,
        guidance=request.guidance,
        style=request.style,
        video=fit_frame_count(clip.frames, generated),
        strength=strength,
        audio=not keep_audio,
        backend=chosen.name,
        model=model,
        tier=tier,
        loras=tuple(request.loras),
    )
    made = engine.generate(generation, progress=progress, cancel=cancel, backend=chosen, preview=preview)
    frames = resize_frames(made.frames[:count], clip.width, clip.height)
    if keep_audio:
        audio, rate = clip.audio, clip.sample_rate
    elif made.audio is not None:
        assert made.sample_rate is not None  # a Clip with sound has its rate
        audio, rate = fit_audio(made.audio, made.sample_rate, count, clip.fps), made.sample_rate
    else:
        audio, rate = None, None
    metadata = dict(made.metadata)
    metadata.update(
        {
            "kind": "remix",
            "parent": parent,
            "strength": strength,
            "audio_from": "parent" if keep_audio else "remix",
            "num_frames": count,
            "width": clip.width,
            "height": clip.height,
            "audio": audio is not None,
        }
    )
    return Clip(frames, clip.fps, audio, rate if audio is not None else None, metadata)


def remix_frames(count: int, backend: Any) -> int:
    """How many frames ``backend`` makes to remix a clip of ``count`` frames: its frame grid, rounded up."""
    multiple = max(1, int(getattr(backend, "frame_multiple", 1)))
    return max(int(getattr(backend, "min_frames", 1)), multiple * math.ceil((count - 1) / multiple) + 1)
