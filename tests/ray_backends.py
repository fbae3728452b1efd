"""Backends for the Ray tests (tests/test_ray.py), loaded by name on the server and on every worker.

``slow`` and ``slow2`` sleep ``STEP_S`` a step, so a job lasts as long as its steps say and can be cancelled or
lost mid-way; each step carries a small preview.
"""

from __future__ import annotations

import os
import time

import numpy as np

from kinema import Clip, hookimpl
from kinema.backends.base import Backend, BackendStatus, Defaults
from kinema.backends.limits import Limits
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

    def job_limits(self):
        # The workers' own limit (tests/ray_cluster.py sets it there only): the server must check against it.
        return Limits(frames=int(os.environ.get("KINEMA_TEST_WORKER_FRAMES", "257")), why="the test workers'")

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
    register(SlowCameo())


class SlowCameo(Slow):
    """Takes one cameo: its frames are the cameo's first portrait's mean, and its metadata what the worker got."""

    name = "slow-cameo"
    max_cameos = 1

    def generate(self, request, plan, *, progress, cancel, preview=False, conditioning=None):
        clip = super().generate(request, plan, progress=progress, cancel=cancel, preview=preview)
        if conditioning and conditioning.cameos:
            cameo = conditioning.cameos[0]
            clip.frames[:] = int(cameo.reference_images()[0].mean())
            clip.metadata["worker_got"] = {
                "name": cameo.name,
                "references": len(cameo.references),
                "faces": len(cameo.faces),
                "voice": cameo.voice,
                "embedding": cameo.embedding,
                "allowed_users": list(cameo.allowed_users),
                "capture": cameo.capture,
                "verification": getattr(cameo, "verification", {}),
            }
        return clip
