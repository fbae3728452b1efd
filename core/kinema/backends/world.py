"""The demo world's trained model as a backend: a ball bouncing in a room, with the sound of every bounce.

The real LTX-2 classes at toy size (``kinema.world.model``), trained on the
world kinema renders itself (``kinema.world``), loaded from the package with no
download and no build step. It makes what it was trained on: 64x64 at 12 fps,
clips of 4k+1 frames; other sizes and frame rates are snapped to those and the
user is told, and prompt words outside the world's vocabulary are named.

Until the trained transformer ships, the backend reports itself not ready;
``KINEMA_WORLD_MODEL`` points it at a pipeline folder (``kinema.world.assemble``)
for evaluation and development.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from kinema.backends.base import BackendStatus, Defaults, Plan
from kinema.backends.device import pick_device
from kinema.backends.limits import Limits
from kinema.backends.ltx2 import LTX2Backend
from kinema.backends.tiny import TinyBackend, _Tiny
from kinema.errors import MissingWeightsError
from kinema.hookspecs import hookimpl
from kinema.world.captions import unknown_words
from kinema.world.paths import WEIGHTS

WIDTH = HEIGHT = 64
FPS = 12
CLIP_FRAMES = 25  # what the model was trained on: 2.08 s


def model_folder() -> Path:
    """The pipeline folder: ``KINEMA_WORLD_MODEL`` if set, else the one shipped in the package."""
    override = os.environ.get("KINEMA_WORLD_MODEL")
    if override:
        return Path(override)
    # kinema.world itself is numpy only; its train module imports torch and diffusers, which a status
    # check (answered in a server thread while a worker loads diffusers) must never do.
    return WEIGHTS


def is_complete(folder: Path) -> bool:
    return (folder / "model_index.json").is_file() and (folder / "transformer").is_dir()


class WorldBackend(LTX2Backend):
    name = "tiny"  # the default everywhere; "world" and "demo" name it too
    description = "the demo world (trained LTX-2 at toy size): a ball bouncing in a room, with its sound"
    default_model = "kinema/world"
    defaults = Defaults(width=WIDTH, height=HEIGHT, fps=FPS, seconds=CLIP_FRAMES / FPS, steps=16, guidance=3.0)
    size_multiple = WIDTH
    frame_multiple = 4  # the world's video VAE compresses time x4 (LTX-2's x8)
    min_frames = 5
    max_start_frames = 9  # three latent frames: the first, then two of motion to continue
    is_demo = True
    has_second_stage = False  # trained at 64x64 only: no latent upsampler
    demo_note = (
        "kinema's demo world (LTX-2 at toy size, trained on a ball bouncing in a room: 46 words, 64x64;"
        " see docs/world_model.md)"
    )
    limits = Limits(
        frames=241, pixels=WIDTH * HEIGHT, steps=500, seconds=20.0, why="the demo world: 64x64 at 12 fps, as trained"
    )
    # Six blocks: no spatio-temporal or modality guidance passes, as for the tiny demo.
    pipeline_kwargs = TinyBackend.pipeline_kwargs
    for_model = _Tiny.for_model  # the embedded model only: --model is refused

    def status(self) -> BackendStatus:
        folder = model_folder()
        if self._components is not None or is_complete(folder):
            return BackendStatus(True, "the demo world's trained model", pick_device())
        return BackendStatus(
            False,
            f"the demo world's model is not in {folder} yet (its transformer is training);"
            " set KINEMA_WORLD_MODEL to an assembled folder",
            pick_device(),
        )

    def _model_path(self) -> Path:
        folder = model_folder()
        if not is_complete(folder):
            raise MissingWeightsError(self.status().detail)
        return folder

    def snap_fps(self, fps: float) -> float:
        return float(FPS)

    def plan(self, request) -> Plan:
        notes = []
        changes: dict[str, Any] = {}
        if (request.width or WIDTH, request.height or HEIGHT) != (WIDTH, HEIGHT):
            notes.append(
                f"the demo world is {WIDTH}x{HEIGHT}; using that instead of"
                f" {request.width or WIDTH}x{request.height or HEIGHT}"
            )
            changes.update(width=WIDTH, height=HEIGHT)
        if request.fps and self.snap_fps(float(request.fps)) != float(request.fps):
            notes.append(f"the demo world runs at {FPS} fps; using that instead of {float(request.fps):g}")
            changes["fps"] = self.snap_fps(float(request.fps))
        unknown = unknown_words(request.prompt or "")
        if unknown:
            notes.append(
                f"the demo world does not know: {', '.join(unknown)} (it knows a ball's colour and size,"
                " the walls and the floor; see docs/world_model.md)"
            )
        if changes:
            request = dataclasses.replace(request, **changes)
        plan = super().plan(request)
        return dataclasses.replace(plan, notes=(*notes, *plan.notes)) if notes else plan


@hookimpl
def register_backends(register):
    register(WorldBackend(), aliases=("world", "demo"))
