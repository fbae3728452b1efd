"""Backends for the Ray tests (tests/test_ray.py), loaded by name on the server and on every worker.

``slow`` and ``slow2`` sleep ``STEP_S`` a step, so a job lasts as long as its steps say and can be cancelled or
lost mid-way; each step carries a small preview.
"""

from __future__ import annotations

import time

import numpy as np

from kinema import Clip, hookimpl
from kinema.backends.base import Backend, BackendStatus, Defaults
from kinema.progress import Progress

STEP_S = 0.1


class Slow(Backend):
    name = "slow"
    description = "sleeps a step at a time (tests)"
    defaults = Defaults(width=16, height=16, fps=8, seconds=1, steps=10, guidance=1.0)
    size_multiple, frame_multiple, min_frames = 16, 1, 1
    makes_audio = False
    is_demo = True

    def status(self):
        return BackendStatus(True, "test backend", "cpu")

    def generate(self, request, plan, *, progress, cancel, preview=False):
        for step in range(plan.steps):
            time.sleep(STEP_S)
            cancel.raise_if_cancelled()
            picture = np.full((8, 8, 3), step * 10 % 256, np.uint8) if preview else None
            progress(Progress(step + 1, plan.steps, "video", picture))
        return Clip(np.full((plan.num_frames, 16, 16, 3), 128, np.uint8), plan.fps)


class Slow2(Slow):
    name = "slow2"


@hookimpl
def register_backends(register):
    register(Slow())
    register(Slow2())
