"""LTX-2: picture and sound from one diffusion transformer, in one pass."""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Optional

from ..clip import Clip, fit_audio
from ..hookspecs import hookimpl
from ..progress import CancelToken, Progress
from .base import Backend, BackendStatus, Defaults, Plan, audio_to_float32, frames_to_uint8, step_callback, torch_generator


class LTX2Backend(Backend):
    name = "ltx2"
    description = "LTX-2 text/image to video with audio in one pass"
    default_model = "Lightricks/LTX-2"
    defaults = Defaults(width=768, height=512, fps=24, seconds=5.0, steps=40, guidance=4.0)
    size_multiple = 32
    frame_multiple = 8
    min_frames = 9
    # Extra pipeline arguments for this checkpoint family (the tiny model turns off the extra guidance passes).
    pipeline_kwargs: ClassVar[dict[str, Any]] = {}

    def __init__(self, model: Optional[str] = None, *, components: Optional[dict] = None, device: Optional[str] = None):
        self.model_id = model or self.default_model
        self._components = components  # already-built modules: tests, or a host that loaded them itself
        self._device = device
        self._pipe: Any = None

    def for_model(self, model: str) -> "LTX2Backend":
        return type(self)(model, device=self._device)

    def status(self) -> BackendStatus:
        from .. import models
        from ..device import pick_device

        device = self._device or pick_device()
        if self._components is not None or models.is_present(self.model_id):
            return BackendStatus(True, f"{self.model_id} ready", device)
        return BackendStatus(False, f"{self.model_id} not downloaded: run `kinema models pull {self.model_id}`", device)

    def _model_path(self):
        from .. import models

        return models.resolve(self.model_id)

    def pipeline(self) -> Any:
        """The text-to-video pipeline; weights load here, on the first job."""
        if self._pipe is not None:
            return self._pipe
        from diffusers import LTX2Pipeline

        from ..device import pick_device, pick_dtype

        device = self._device or pick_device()
        if self._components is not None:
            pipe = LTX2Pipeline(**self._components)
            pipe.set_progress_bar_config(disable=True)
            self._pipe = pipe.to(device)
            return self._pipe
        from ..loading import load_pipeline

        pipe, _policy = load_pipeline(LTX2Pipeline, self._model_path(), device, pick_dtype(device))
        return pipe

    def unload(self) -> None:
        self._pipe = None

    def generate(self, request, plan: Plan, *, progress: Callable[[Progress], None], cancel: CancelToken) -> Clip:
        from PIL import Image

        pipe = self.pipeline()
        kwargs: dict[str, Any] = {}
        if request.image is not None:
            from diffusers import LTX2ImageToVideoPipeline

            # Same modules, different sampling loop: nothing is loaded twice.
            pipe = LTX2ImageToVideoPipeline(**pipe.components)
            pipe.set_progress_bar_config(disable=True)
            kwargs["image"] = Image.fromarray(request.image)
        cancel.raise_if_cancelled()
        output = pipe(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt or None,
            width=plan.width,
            height=plan.height,
            num_frames=plan.num_frames,
            frame_rate=float(plan.fps),
            num_inference_steps=plan.steps,
            guidance_scale=plan.guidance,
            generator=torch_generator(plan.seed),
            output_type="np",
            callback_on_step_end=step_callback(plan.steps, "video", progress, cancel),
            **self.pipeline_kwargs,
            **kwargs,
        )
        frames = frames_to_uint8(output.frames)
        audio = sample_rate = None
        if request.audio:
            sample_rate = int(pipe.vocoder.config.output_sampling_rate)
            audio = fit_audio(audio_to_float32(output.audio), sample_rate, frames.shape[0], plan.fps)
        return Clip(frames, plan.fps, audio, sample_rate)


@hookimpl
def register_backends(register):
    register(LTX2Backend(), aliases=("ltx-2",))
