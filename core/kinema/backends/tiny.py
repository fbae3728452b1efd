"""The embedded demo: tiny, randomly initialised LTX-2 and Wan built offline on first use.

Real architectures at toy sizes, so every path (CLI, server, hosts, tests)
runs end to end in seconds on any CPU with no download. Their output is
coloured noise with noise for sound.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import ClassVar

from kinema.backends.base import BackendStatus, Defaults
from kinema.backends.device import pick_device
from kinema.backends.limits import Limits
from kinema.backends.loading import quiet_libraries
from kinema.backends.ltx2 import LTX2Backend
from kinema.backends.wan import WanBackend
from kinema.errors import InvalidRequestError
from kinema.home import models_dir
from kinema.hookspecs import hookimpl
from kinema.request import MAX_STEPS

_build_lock = threading.Lock()


def tiny_model_path(kind: str) -> Path:
    """The folder of tiny model ``kind`` ('ltx2', 'wan', 'stable-audio'), built on first use."""
    from kinema.backends.tiny_parts import build_tiny, is_built

    path = models_dir() / f"kinema--tiny-{kind}"
    if not is_built(kind, path):  # missing, or built by another kinema or diffusers: rebuilt, not trusted
        with _build_lock:
            if not is_built(kind, path):
                quiet_libraries()
                build_tiny(kind, path)  # atomic: a half-built folder never appears
    return path


class _Tiny:
    name: ClassVar[str]  # set by the backend classes it is mixed into
    is_demo = True
    has_second_stage = False  # no latent upsampler is built for the demos
    # Small frames, so the demo stays a demo on any machine. Steps are left at every request's own limit: a
    # tiny step takes milliseconds, and hosts' tests use long step runs as jobs to cancel.
    limits = Limits(
        frames=481,
        pixels=1024 * 1024,
        steps=MAX_STEPS,
        seconds=20.0,
        why="the embedded demo: 20 s at 24 fps, 1024x1024 at most",
    )

    def for_model(self, model: str):
        raise InvalidRequestError(f"backend {self.name!r} runs only its built-in demo model; drop --model")

    def status(self) -> BackendStatus:
        return BackendStatus(True, "embedded demo model (random weights), built offline on first use", pick_device())

    def require_weights(self, request=None) -> None:
        """Built offline on first use: always there."""


class TinyBackend(_Tiny, LTX2Backend):
    name = "tiny-ltx2"
    description = "embedded tiny LTX-2 (demo, random weights): video and audio in one pass, anywhere"
    default_model = "kinema/tiny-ltx2"
    defaults = Defaults(width=64, height=64, fps=24, seconds=1.0, steps=8, guidance=3.0)
    # The toy transformer has two blocks: no spatio-temporal or modality guidance passes.
    pipeline_kwargs = {
        "stg_scale": 0.0,
        "audio_stg_scale": 0.0,
        "modality_scale": 1.0,
        "audio_modality_scale": 1.0,
        "spatio_temporal_guidance_blocks": None,
    }

    def _model_path(self) -> Path:
        return tiny_model_path("ltx2")


class TinyWanBackend(_Tiny, WanBackend):
    name = "tiny-wan"
    description = "embedded tiny Wan 2.2 + Stable Audio (demo, random weights)"
    default_model = "kinema/tiny-wan"
    default_audio_model = "kinema/tiny-stable-audio"
    defaults = Defaults(width=64, height=64, fps=24, seconds=1.0, steps=8, guidance=5.0)

    def _model_path(self, model: str) -> Path:
        return tiny_model_path(model.removeprefix("kinema/tiny-"))


@hookimpl
def register_backends(register):
    register(TinyBackend())
    register(TinyWanBackend())
