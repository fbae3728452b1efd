"""Frame-exact plans of a storyboard's shots: what each keeps, what is generated, with which seed and prompt."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from kinema.backends.limits import check_frames_fit
from kinema.engine import get_backend
from kinema.errors import InvalidRequestError
from kinema.media import tts
from kinema.request import MAX_SEED, GenerationRequest, seconds_to_frames
from kinema.storyboard.model import Shot, Storyboard, StoryboardError
from kinema.styles import apply_style


@dataclass(frozen=True)
class ShotPlan:
    """How one shot is made: the frames it keeps and the slightly longer generation they are cut from."""

    index: int  # 0-based
    shot: Shot
    prompt: str  # with the world folded in (the style is added by the engine)
    style: str | None
    seed: int
    start_frame: int  # in the film
    frames: int  # kept in the film
    head: int  # generated frames dropped before the kept ones
    generated: int  # frames the backend makes
    fps: Fraction

    @property
    def seconds(self) -> float:
        return float(self.frames / self.fps)

    @property
    def start(self) -> float:
        return float(self.start_frame / self.fps)


_PRONOUNS = re.compile(r"\b(he|she|they|him|her|his|hers|them|their|theirs|we|us|our)\b", re.IGNORECASE)


def compose_prompt(board: Storyboard, shot: Shot) -> str:
    """The shot's prompt with the world folded in: its characters, the setting, the camera, the lines spoken.

    A character is described in every shot that names it; a shot that names
    nobody but says "she" or "they" gets every character (it means them).
    Nameless characters are in every shot.
    """
    parts = [shot.prompt.strip().rstrip(".")]
    mentioned_text = " ".join([shot.prompt, shot.camera, *(line.speaker for line in shot.dialogue), *shot.cameos])
    named = [(n, d) for n, d in board.world.characters if n]
    mentioned = [(n, d) for n, d in named if re.search(rf"\b{re.escape(n)}\b", mentioned_text, re.IGNORECASE)]
    if not mentioned and _PRONOUNS.search(shot.prompt):
        mentioned = named
    chosen = mentioned + [(n, d) for n, d in board.world.characters if not n]
    for name, description in chosen:
        parts.append(f"{name}: {description}".rstrip(".") if name else description.rstrip("."))
    if board.world.setting:
        parts.append(f"Setting: {board.world.setting.rstrip('.')}")
    if shot.camera:
        parts.append(f"Camera: {shot.camera.rstrip('.')}")
    for line in shot.dialogue:
        who = f"{line.speaker} says" if line.speaker else "A voice says"
        parts.append(f'{who}: "{line.text}"')
    return ". ".join(parts)


def plan_storyboard(board: Storyboard, backend: Any = None) -> list[ShotPlan]:
    """Frame-exact plan of every shot: what it keeps, what is generated, with which seed and prompt.

    Every shot is checked against the backend's limits, and the film against memory (kinema.backends.limits),
    so a storyboard that cannot be made fails here, before its first shot.
    """
    backend = backend or get_backend(board.backend)
    # A backend that makes one frame rate only (the demo world) sets the film's: frames are counted in it.
    fps = Fraction(backend.snap_fps(float(board.fps or backend.defaults.fps))).limit_denominator(1001)
    multiple = max(1, int(getattr(backend, "frame_multiple", 1)))
    minimum = max(1, int(getattr(backend, "min_frames", 1)))
    plans: list[ShotPlan] = []
    elapsed = Fraction(0)
    problems: list[tuple[int | None, str]] = []
    last = len(board.shots) - 1
    for index, shot in enumerate(board.shots):
        if (shot.cut == "continue" or shot.image is not None) and not backend.supports_image:
            problems.append(
                (
                    shot.line,
                    f"shot {index + 1}: backend {backend.name!r} cannot start a shot from a frame;"
                    " make it a hard cut without an image, or pick another backend",
                )
            )
        seconds = Fraction(shot.seconds or board.seconds or backend.defaults.seconds).limit_denominator(10**6)
        seconds = max(seconds, 1 / fps)  # a shot shorter than a frame lasts one frame, as a clip does
        # Cumulative rounding: the film's frame count is the total length rounded once, never N roundings.
        start, end = seconds_to_frames(elapsed, fps), seconds_to_frames(elapsed + seconds, fps)
        elapsed += seconds
        frames = max(1, end - start)  # rounding half to even can leave a one-frame shot none
        head = (
            0 if index == 0 else 1
        )  # sound from before the cut, to crossfade with; and no repeated frame after a continue
        tail = 0 if index == last else 1  # sound from after the cut
        need = head + frames + tail
        generated = max(minimum, multiple * math.ceil((need - 1) / multiple) + 1)
        seed = shot.seed if shot.seed is not None else (board.seed + index) % (MAX_SEED + 1)
        plans.append(
            ShotPlan(
                index,
                shot,
                compose_prompt(board, shot),
                shot.style or board.world.style,
                seed,
                start,
                frames,
                head,
                generated,
                fps,
            )
        )
    if problems:
        raise StoryboardError(board.source, problems)
    _check_voice_lines(board, plans, backend)
    _check_limits(board, plans, backend)
    return plans


def voice_line(shot: Shot, backend: Any) -> dict[str, Any]:
    """The shot's first line said by one of its cameos, as request fields: spoken in that cameo's voice by the
    voice model (kinema.media.tts), where the backend follows a speech line (ltx2); else nothing, and the line
    stays in the prompt only. One line a shot: a clip follows one speech track."""
    if not getattr(backend, "supports_speech", False):
        return {}
    for line in shot.dialogue:
        if line.speaker.strip().lower() in shot.cameos:
            return {"dialogue": line.text, "speech": line.speaker.strip().lower()}
    return {}


def _check_voice_lines(board: Storyboard, plans: list[ShotPlan], backend: Any) -> None:
    """Lines in a cameo's voice need the voice model: say so before the first shot, not at the shot that speaks."""
    speaking = [plan for plan in plans if voice_line(plan.shot, backend)]
    if not speaking or tts.status()[0]:
        return
    problems: list[tuple[int | None, str]] = [
        (
            plan.shot.line,
            f"shot {plan.index + 1}: {voice_line(plan.shot, backend)['speech']}'s line is spoken in that cameo's"
            f" voice, which needs a voice model: {tts.status()[1].removeprefix('off: ')}",
        )
        for plan in speaking
    ]
    raise StoryboardError(board.source, problems)


def _check_limits(board: Storyboard, plans: list[ShotPlan], backend: Any) -> None:
    """Plan every shot's generation as the engine will (which checks it), then the whole film's memory."""
    problems: list[tuple[int | None, str]] = []
    size = None
    for plan in plans:
        try:
            planned = backend.plan(apply_style(shot_request(board, plan, None)))
        except StoryboardError as error:
            problems.extend(error.problems)
            continue
        except InvalidRequestError as error:
            problems.append((plan.shot.line, f"shot {plan.index + 1}: {error}"))
            continue
        size = size or (planned.width, planned.height)  # every shot has the film's size
    if size is not None and not problems:
        try:
            check_frames_fit(sum(p.frames for p in plans), *size, backend, what="the film")
        except InvalidRequestError as error:
            problems.append((None, str(error)))
    if problems:
        raise StoryboardError(board.source, problems)


def sent_prompts(board: Storyboard, plan: ShotPlan) -> tuple[str, str]:
    """The prompt and negative prompt the backend gets for this shot: the world folded in and the style added."""
    request = apply_style(shot_request(board, plan, None))
    return request.prompt, request.negative_prompt


def shot_request(board: Storyboard, plan: ShotPlan, image: np.ndarray | None, user: str | None = None):
    shot = plan.shot
    negative = ", ".join(p for p in (board.negative_prompt, shot.negative_prompt) if p)
    fields: dict[str, Any] = {"cameos": tuple(shot.cameos)} if shot.cameos else {}
    if shot.cameos:
        fields.update(voice_line(shot, get_backend(board.backend)))
    if user is not None:
        fields["user"] = user
    try:
        return GenerationRequest(
            prompt=plan.prompt,
            negative_prompt=negative,
            seconds=float(plan.generated / plan.fps),
            fps=float(plan.fps),
            width=board.width,
            height=board.height,
            seed=plan.seed,
            steps=board.steps,
            guidance=board.guidance,
            tier=board.tier,
            style=plan.style,
            image=image if image is not None else shot.image,
            audio=board.audio,
            backend=board.backend,
            model=board.model,
            **fields,
        )
    except InvalidRequestError as error:
        raise StoryboardError(board.source, [(shot.line, f"shot {plan.index + 1}: {error}")]) from None
