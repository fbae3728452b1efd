"""Extend a clip by N seconds: new frames that continue from its last ones, with the sound crossfaded."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from kinema import engine
from kinema.backends.limits import check_frames_fit
from kinema.clip import Clip
from kinema.errors import InvalidRequestError
from kinema.lineage import Source, open_source, pick_backend, pick_tier, resize_frames
from kinema.media.assemble import Piece, join, resample
from kinema.request import GenerationRequest, check_seconds, seconds_to_frames


@dataclass(frozen=True)
class ExtendRequest:
    """What to extend and how: ``source`` (a Clip or an MP4 path) and ``seconds`` to add.

    ``None`` means "as the clip was made" for ``prompt``, ``negative_prompt``, ``backend``, ``model`` and
    ``tier``, and the backend's default for ``seed``, ``steps`` and ``guidance``. ``video_id`` names the
    server job the clip came from, for the result's lineage.
    """

    source: Source
    seconds: float
    prompt: str | None = None
    negative_prompt: str | None = None
    style: str | None = None
    seed: int | None = None
    steps: int | None = None
    guidance: float | None = None
    tier: str | None = None
    backend: str | None = None
    model: str | None = None
    video_id: str | None = None
    loras: tuple = ()  # (safetensors path, weight) pairs loaded for the new part, as GenerationRequest.loras


def extend(
    request: ExtendRequest,
    *,
    progress: Callable[[Any], None] | None = None,
    cancel: Any = None,
    backend_obj: Any = None,
    preview: bool = False,
) -> Any:
    """``request.source`` (a Clip or an MP4 path) followed by ``request.seconds`` more, as one new Clip.

    The new part is generated from the clip's last frames: as many as the
    backend can continue from (LTX-2: 17, so motion carries on; others: the
    last frame, image-to-video). Those frames are re-created first and dropped,
    so the picture runs on without a repeated frame. ``prompt`` defaults to the
    clip's own; ``backend`` and ``tier`` default to the ones that made the clip.
    The result's metadata names the clip as its ``parent``. ``preview=True`` adds a
    small RGB preview of each step to the progress events (``engine.generate``).
    """
    clip, parent = open_source(request.source, video_id=request.video_id)
    seconds = check_seconds(request.seconds, name="seconds to add", required=True)
    prompt = request.prompt or clip.metadata.get("prompt")
    if not prompt:
        raise InvalidRequestError("this clip carries no kinema prompt; say what happens next with --prompt")
    backend, model = pick_backend(clip, request.backend, request.model)
    tier = pick_tier(clip, request.tier)
    chosen = backend_obj or engine.resolve_backend(GenerationRequest(prompt, backend=backend, model=model, tier=tier))
    if not chosen.supports_image:
        raise InvalidRequestError(f"backend {chosen.name!r} cannot start from frames, so it cannot extend a clip")
    fps = clip.fps
    context, wanted, generated = plan_extension(clip.frame_count, fps, clip.width, clip.height, seconds, chosen)
    last = clip.frames[-context:]
    negative_prompt = request.negative_prompt
    generation = GenerationRequest(
        prompt=prompt,
        negative_prompt=clip.metadata.get("negative_prompt", "") if negative_prompt is None else negative_prompt,
        seconds=float(generated / fps),
        fps=float(fps),
        width=clip.width,
        height=clip.height,
        seed=request.seed,
        steps=request.steps,
        guidance=request.guidance,
        style=request.style,
        image=last[-1] if context == 1 else None,
        start_frames=last if context > 1 else None,
        audio=clip.audio is not None,
        backend=chosen.name,
        model=model,
        tier=tier,
        loras=tuple(request.loras),
    )
    more = engine.generate(generation, progress=progress, cancel=cancel, backend=chosen, preview=preview)
    recreated = resize_frames(more.frames[:context], clip.width, clip.height)
    frames = resize_frames(more.frames[context : context + wanted], clip.width, clip.height)
    frames = carry_tone(last, recreated, frames)
    audio, rate = more.audio, more.sample_rate
    if audio is not None and clip.audio is not None and rate != clip.sample_rate:
        assert rate is not None and clip.sample_rate is not None  # a Clip with sound has its rate
        audio, rate = resample(audio, rate, clip.sample_rate), clip.sample_rate
    sample_rate = clip.sample_rate or rate
    pieces = [
        Piece(clip.frames, clip.audio, 0),
        Piece(frames, audio, round(Fraction(context) * sample_rate / fps) if sample_rate else 0),
    ]
    joined, joined_audio = join(pieces, fps, sample_rate)
    metadata = dict(more.metadata)
    metadata.update(
        {
            "kind": "extend",
            "parent": parent,
            "extended_seconds": round(float(wanted / fps), 6),
            "continued_from_frames": context,
            "num_frames": int(joined.shape[0]),
            "width": clip.width,
            "height": clip.height,
            "audio": joined_audio is not None,
        }
    )
    return Clip(joined, fps, joined_audio, sample_rate if joined_audio is not None else None, metadata)


SEAM_HANDOFF_FRAMES = 5  # the new part takes over the last frame's detail over this many frames
TONE_CELLS = 8  # the tone carried over is the residual averaged in an 8 x 8 grid: light and colour, not shapes


def carry_tone(context: np.ndarray, recreated: np.ndarray, new: np.ndarray) -> np.ndarray:
    """``new`` frames that join ``context`` (the clip's last frames) without a jump at the seam.

    A backend re-creates the context frames before continuing, never exactly: through its autoencoder
    the light and colour drift by a few grey levels (the demo world: 4-7), and the first new frame
    would jump by that much. So the new part keeps the context's tone (the residual between the
    context and its re-creation, averaged over the context frames and smoothed to an 8 x 8 grid) for
    its whole length, and takes over from the clip's very last frame over a few frames, as a short
    dissolve does. A faithful re-creation makes both corrections vanish.
    """
    if not len(new) or not len(recreated):
        return new
    residual = context.astype(np.float32) - recreated.astype(np.float32)
    tone = _smooth(residual.mean(axis=0), TONE_CELLS)
    detail = residual[-1] - tone
    handoff = np.clip(1 - np.arange(1, len(new) + 1) / (SEAM_HANDOFF_FRAMES + 1), 0, None).astype(np.float32)
    out = new.astype(np.float32) + tone + handoff[:, None, None, None] * detail
    return np.clip(np.rint(out), 0, 255).astype(new.dtype)


def _smooth(image: np.ndarray, cells: int) -> np.ndarray:
    """``image`` averaged over a ``cells`` x ``cells`` grid, then bilinearly spread back to every pixel."""
    height, width = image.shape[:2]
    rows = np.linspace(0, height, cells + 1).round().astype(int)
    cols = np.linspace(0, width, cells + 1).round().astype(int)
    grid = np.array(
        [
            [image[r0:r1, c0:c1].mean(axis=(0, 1)) for c0, c1 in zip(cols, cols[1:], strict=False)]
            for r0, r1 in zip(rows, rows[1:], strict=False)
        ]
    )
    along_y = _spread(height, (rows[:-1] + rows[1:] - 1) / 2)
    along_x = _spread(width, (cols[:-1] + cols[1:] - 1) / 2)
    return np.einsum("hk,kjc,wj->hwc", along_y, grid, along_x).astype(np.float32)


def _spread(length: int, centres: np.ndarray) -> np.ndarray:
    """Weights [length, cells] that interpolate linearly between cell centres (flat beyond the edges)."""
    eye = np.eye(len(centres))
    return np.stack([np.interp(np.arange(length), centres, eye[k]) for k in range(len(centres))], axis=1)


def plan_extension(
    frame_count: int, fps: Fraction, width: int, height: int, seconds: float, backend: Any
) -> tuple[int, int, int]:
    """(context, added, generated) for extending a clip of ``frame_count`` frames by ``seconds`` on ``backend``:
    the last frames it continues from, the frames it gains, and the frames the backend makes.

    Less than a frame adds one. Raises if the longer clip would not fit in memory (kinema.backends.limits);
    the generation itself is checked where it is planned.
    """
    wanted = max(1, seconds_to_frames(seconds, fps))  # at least a frame, as a clip's length is snapped
    multiple = max(1, int(getattr(backend, "frame_multiple", 1)))
    context = min(backend.max_start_frames, frame_count)
    context = multiple * ((context - 1) // multiple) + 1
    need = context + wanted
    generated = max(int(getattr(backend, "min_frames", 1)), multiple * math.ceil((need - 1) / multiple) + 1)
    check_frames_fit(frame_count + wanted, width, height, backend, what="the extended clip")
    return context, wanted, generated
