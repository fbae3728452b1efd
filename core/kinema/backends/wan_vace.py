"""Wan VACE: Wan video that keeps people (cameos) from reference pictures, with a Stable Audio sound pass.

VACE ("all-in-one video creation and editing") adds context blocks to Wan
that read reference images, a source video and a mask. kinema uses it for
subject reference (each cameo's best portrait), first-frame and extend
conditioning (masked frames). The released VACE checkpoints are Wan 2.1
models, so this is its own backend next to ``wan`` (Wan 2.2 TI2V).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kinema.backends.base import BackendStatus, Defaults, Plan, frames_to_uint8, step_callback, torch_generator
from kinema.backends.device import pick_device
from kinema.backends.limits import Limits
from kinema.backends.loading import load_pipeline
from kinema.backends.previews import wan_preview
from kinema.backends.tiny import tiny_model_path
from kinema.backends.wan import WanBackend
from kinema.clip import Clip
from kinema.errors import InvalidRequestError
from kinema.hookspecs import hookimpl
from kinema.progress import CancelToken, Progress

GRAY = 127  # VACE's "nothing here" pixel: zero after its [-1, 1] scaling


class WanVACEBackend(WanBackend):
    name = "wan-vace"
    description = "Wan 2.1 VACE: text to video keeping cameos (reference pictures), with a Stable Audio sound pass"
    default_model = "Wan-AI/Wan2.1-VACE-1.3B-diffusers"
    defaults = Defaults(width=832, height=480, fps=16, seconds=5.0, steps=50, guidance=5.0)
    size_multiple = 16  # Wan 2.1 VAE x8, patch x2
    frame_multiple = 4
    min_frames = 5
    supports_remix = False
    max_start_frames = 17
    max_cameos = 4
    limits = Limits(
        frames=81,
        pixels=1280 * 720,
        steps=100,
        seconds=47.0,
        why="Wan 2.1 VACE makes 81-frame (5 s at 16 fps) clips, at 720p at most (the 14B; the"
        " 1.3B default was trained at 480p); Stable Audio Open makes at most 47 s of sound",
    )

    def _pipeline(self, role: str) -> Any:
        if role != "video":
            return super()._pipeline(role)
        if role in self._pipes:
            return self._pipes[role]
        from diffusers import WanVACEPipeline

        device = self._device or pick_device()
        if self._components is not None:
            pipe = WanVACEPipeline(**self._components).to(device)
            pipe.set_progress_bar_config(disable=True)
            self._pipes[role] = pipe
            return pipe
        pipe, _policy = load_pipeline(
            WanVACEPipeline, self._model_path(self.model_id), device, self.load_dtype(device), self.memory
        )
        return pipe

    def conditioning_inputs(self, request, plan: Plan, conditioning: Any = None) -> dict[str, Any]:
        """The VACE inputs for ``request``: reference pictures, and frames to keep with their mask."""
        from PIL import Image

        kwargs: dict[str, Any] = {}
        cameos = conditioning.cameos if conditioning else ()
        if cameos:
            # One portrait per person: VACE reads every reference as another subject to keep.
            kwargs["reference_images"] = [Image.fromarray(cameo.reference_images()[0]) for cameo in cameos]
        keep = None
        if request.image is not None:
            keep = request.image[None]
        elif request.start_frames is not None:
            keep = request.start_frames
        if keep is not None:
            size = (plan.width, plan.height)
            blank = Image.new("RGB", size, (GRAY, GRAY, GRAY))
            video = [Image.fromarray(frame).resize(size, Image.Resampling.LANCZOS) for frame in keep]
            kwargs["video"] = video + [blank] * (plan.num_frames - len(video))
            # Black keeps a frame, white generates it.
            kwargs["mask"] = [Image.new("L", size, 0)] * len(video) + [Image.new("L", size, 255)] * (
                plan.num_frames - len(video)
            )
        return kwargs

    def generate(
        self,
        request,
        plan: Plan,
        *,
        progress: Callable[[Progress], None],
        cancel: CancelToken,
        preview: bool = False,
        conditioning: Any = None,
    ) -> Clip:
        video_pipe = self._pipeline("video")
        audio_pipe = self._pipeline("audio") if request.audio else None
        total = plan.steps * (2 if audio_pipe is not None else 1)
        kwargs = self.conditioning_inputs(request, plan, conditioning)
        preview_fn = None
        if preview:
            preview_fn = wan_preview(video_pipe)
        cancel.raise_if_cancelled()
        output = video_pipe(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt or None,
            width=plan.width,
            height=plan.height,
            num_frames=plan.num_frames,
            num_inference_steps=plan.steps,
            guidance_scale=plan.guidance,
            generator=torch_generator(plan.seed),
            output_type="np",
            callback_on_step_end=step_callback(total, "video", progress, cancel, preview=preview_fn),
            **kwargs,
        )
        frames = frames_to_uint8(output.frames)
        if audio_pipe is None:
            return Clip(frames, plan.fps, None, None)
        on_step = step_callback(total, "audio", progress, cancel, offset=plan.steps)
        return self._add_sound(audio_pipe, request, plan, frames, on_step)


class TinyWanVACEBackend(WanVACEBackend):
    name = "tiny-wan-vace"
    description = "embedded tiny Wan VACE + Stable Audio (demo, random weights): cameo conditioning anywhere"
    default_model = "kinema/tiny-wan-vace"
    default_audio_model = "kinema/tiny-stable-audio"
    defaults = Defaults(width=64, height=64, fps=16, seconds=1.0, steps=8, guidance=5.0)
    is_demo = True

    def for_model(self, model: str):
        raise InvalidRequestError(f"backend {self.name!r} runs only its built-in demo model; drop --model")

    def status(self):
        return BackendStatus(True, "embedded demo model (random weights), built offline on first use", pick_device())

    def _model_path(self, model: str):
        return tiny_model_path(model.removeprefix("kinema/tiny-"))

    def require_weights(self, request=None) -> None:
        """Built offline on first use: always there."""


@hookimpl
def register_backends(register):
    register(WanVACEBackend(), aliases=("vace", "wan2.1-vace"))
    register(TinyWanVACEBackend())
