"""Making the film: every shot generated (or taken from the cache), trimmed to its plan and joined with crossfaded sound."""

from __future__ import annotations

import dataclasses
import functools
import threading
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


ShotMaker = Callable[[GenerationRequest, Callable[[Progress], None]], Any]
"""Makes one shot's clip from its request, sending step events to the callback (``engine.generate`` by default)."""
Chain = Callable[[ShotMaker], None]
"""Makes one chain's shots in order with the maker it is given (``shot_chains``)."""
ChainRunner = Callable[[list[Chain]], None]
"""Runs a film's chains, which share nothing: one after another here, or at once on several workers."""


def shot_chains(plans: list[ShotPlan]) -> list[list[int]]:
    """The shots that must be made one after another, as lists of 0-based indices in film order.

    A ``continue`` shot starts from the previous shot's last frame, so it joins that shot's chain; any other cut
    starts a new one. Different chains depend on nothing of each other, and may be made at the same time.
    """
    chains: list[list[int]] = []
    for plan in plans:
        if chains and plan.shot.cut == "continue":
            chains[-1].append(plan.index)
        else:
            chains.append([plan.index])
    return chains


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
    run_chains: ChainRunner | None = None,
) -> StoryboardResult:
    """Make every shot (or take it from the cache) and assemble the film.

    ``progress`` gets ``Progress`` events whose stage names the shot
    ("shot 2/3 video"); ``cancel`` stops within one step; ``on_shot`` is called
    as each shot is ready. ``user`` is who asks (for cameo consent; None is the
    local user). ``start_image`` (uint8 [H, W, 3]) is the first shot's first
    frame, unless that shot names an image of its own. ``preview=True`` adds a small RGB
    preview of each step to the events (``engine.generate``), for hosts with a live view.
    ``run_chains`` runs the film's independent chains of shots (``shot_chains``), each given the ``ShotMaker`` to
    make its shots with: by default one after another with ``engine.generate``; ``kinema serve --ray`` runs them
    on several workers at once. The film is assembled in shot order either way; with chains at once, ``on_shot``
    and ``progress`` are called from their threads, one at a time.
    """
    backend = backend or engine.resolve_backend(
        GenerationRequest("storyboard", backend=board.backend, model=board.model)
    )
    plans = plan_storyboard(board, backend)
    cancel = cancel or CancelToken()
    store = ShotCache() if cache else None
    started = time.time()
    slots: list[ShotResult | None] = [None] * len(plans)
    steps = _FilmProgress(len(plans), board.steps or backend.defaults.steps, progress)

    def here(request: GenerationRequest, on_progress: Callable[[Progress], None]) -> Any:
        return engine.generate(request, progress=on_progress, cancel=cancel, backend=backend, preview=preview)

    def chain_of(indices: list[int]) -> Chain:
        def make(generate: ShotMaker) -> None:
            previous_last: np.ndarray | None = None
            for index in indices:
                plan = plans[index]
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
                    try:
                        clip = generate(request, functools.partial(steps.on, index))
                    except InvalidRequestError as error:
                        raise StoryboardError(
                            board.source, [(plan.shot.line, f"shot {plan.index + 1}: {error}")]
                        ) from None
                    if store:
                        store.put(key, clip)
                steps.done(index)
                if clip.frame_count < plan.head + plan.frames:
                    raise InvalidRequestError(
                        f"shot {plan.index + 1}: backend {backend.name!r} made {clip.frame_count} frames"
                        f" where {plan.generated} were planned"
                    )
                result = ShotResult(plan, _kept_clip(clip, plan), clip, cached, request, conditioning)
                slots[index] = result
                previous_last = result.clip.frames[-1]
                if on_shot is not None:
                    with steps.lock:
                        on_shot(result)

        return make

    chains = [chain_of(indices) for indices in shot_chains(plans)]
    if run_chains is None:
        for chain in chains:
            chain(here)
    else:
        run_chains(chains)
    results = [result for result in slots if result is not None]
    if len(results) != len(plans):
        raise RuntimeError(f"the storyboard's chains made {len(results)} of its {len(plans)} shots")

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


class _FilmProgress:
    """The film's steps as one count over its shots, made one after another or at once.

    A shot's own events say where it is; a shot not begun yet is counted at the steps the latest event said a shot
    takes, a shot taken from the cache at none. Made one after another, this is "steps done so far" out of "so far
    plus this shot's total for this and every later shot", as the film's events always read.
    """

    def __init__(self, shots: int, per_shot: int, progress: Callable[[Any], None] | None):
        self.lock = threading.RLock()
        self.progress = progress
        self.per_shot = per_shot
        self.seen: dict[int, tuple[int, int]] = {}  # shot index -> (step, total), begun or finished
        self.finished: set[int] = set()
        self.shots = shots

    def on(self, index: int, event: Progress) -> None:
        with self.lock:
            self.seen[index] = (event.step, event.total)
            self.per_shot = event.total
            if self.progress is None:
                return
            waiting = self.shots - len(self.seen.keys() | self.finished)
            step = sum(step for step, _total in self.seen.values())
            total = sum(total for _step, total in self.seen.values()) + waiting * self.per_shot
            self.progress(
                Progress(
                    step=step,
                    total=total,
                    stage=f"shot {index + 1}/{self.shots} {event.stage}",
                    preview=event.preview,
                )
            )

    def done(self, index: int) -> None:
        with self.lock:
            self.finished.add(index)
            _step, total = self.seen.get(index, (0, 0))  # a cached shot: no steps
            self.seen[index] = (total, total)


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
        # By id, as the shot's clip records them (names are per user; note_saved logs the film's save by these).
        "cameos": list(result.generated.metadata.get("cameos") or plan.shot.cameos),
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
