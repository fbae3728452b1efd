"""Wan 2.2: video from Wan, sound from a Stable Audio pass matched to the clip's length."""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Optional

from ..clip import Clip, fit_audio
from ..errors import MissingWeightsError
from ..hookspecs import hookimpl
from ..progress import CancelToken, Progress
from .base import Backend, BackendStatus, Defaults, Plan, audio_to_float32, frames_to_uint8, step_callback, torch_generator


class WanBackend(Backend):
    name = "wan"
    description = "Wan 2.2 text/image to video, with a Stable Audio sound pass"
    default_model = "Wan-AI/Wan2.2-TI2V-5B-Diffusers"
    default_audio_model = "stabilityai/stable-audio-open-1.0"
    defaults = Defaults(width=1280, height=704, fps=24, seconds=5.0, steps=50, guidance=5.0)
    size_multiple = 32  # TI2V-5B: VAE x16, patch x2
    frame_multiple = 4
    min_frames = 5
    audio_guidance: ClassVar[float] = 7.0

    def __init__(self, model: Optional[str] = None, *, audio_model: Optional[str] = None,
                 components: Optional[dict] = None, audio_components: Optional[dict] = None,
                 device: Optional[str] = None):
        self.model_id = model or self.default_model
        self.audio_model_id = audio_model or self.default_audio_model
        self._components = components
        self._audio_components = audio_components
        self._device = device
        self._pipes: dict[str, Any] = {}

    def for_model(self, model: str) -> "WanBackend":
        return type(self)(model, audio_model=self.audio_model_id, device=self._device)

    def status(self) -> BackendStatus:
        from .. import models
        from ..device import pick_device

        device = self._device or pick_device()
        missing = []
        if self._components is None and not models.is_present(self.model_id):
            missing.append(self.model_id)
        if self._audio_components is None and not models.is_present(self.audio_model_id):
            missing.append(self.audio_model_id)
        if not missing:
            return BackendStatus(True, f"{self.model_id} + {self.audio_model_id} ready", device)
        pulls = " and ".join(f"`kinema models pull {m}`" for m in missing)
        return BackendStatus(False, f"{', '.join(missing)} not downloaded: run {pulls}", device)

    def _pipeline(self, role: str) -> Any:
        if role in self._pipes:
            return self._pipes[role]
        from diffusers import StableAudioPipeline, WanPipeline

        from ..device import pick_device, pick_dtype

        cls, components, model = {
            "video": (WanPipeline, self._components, self.model_id),
            "audio": (StableAudioPipeline, self._audio_components, self.audio_model_id),
        }[role]
        device = self._device or pick_device()
        if components is not None:
            pipe = cls(**components).to(device)
            pipe.set_progress_bar_config(disable=True)
            self._pipes[role] = pipe
            return pipe
        try:
            path = self._model_path(model)
        except MissingWeightsError as error:
            if role == "audio":
                raise MissingWeightsError(f"{error} (or pass --no-audio for a silent clip)") from None
            raise
        from ..loading import load_pipeline

        pipe, _policy = load_pipeline(cls, path, device, pick_dtype(device))
        return pipe

    def _model_path(self, model: str):
        from .. import models

        return models.resolve(model)

    def unload(self) -> None:
        self._pipes.clear()

    def generate(self, request, plan: Plan, *, progress: Callable[[Progress], None], cancel: CancelToken) -> Clip:
        video_pipe = self._pipeline("video")
        audio_pipe = self._pipeline("audio") if request.audio else None
        total = plan.steps * (2 if audio_pipe is not None else 1)
        kwargs: dict[str, Any] = {}
        pipe = video_pipe
        if request.image is not None:
            from diffusers import WanImageToVideoPipeline
            from PIL import Image

            # TI2V checkpoints condition on the first frame's latents; no CLIP image encoder is involved.
            pipe = WanImageToVideoPipeline(
                **{**video_pipe.components, "image_encoder": None, "image_processor": None},
                expand_timesteps=video_pipe.config.expand_timesteps,
            )
            pipe.set_progress_bar_config(disable=True)
            kwargs["image"] = Image.fromarray(request.image)
        cancel.raise_if_cancelled()
        output = pipe(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt or None,
            width=plan.width,
            height=plan.height,
            num_frames=plan.num_frames,
            num_inference_steps=plan.steps,
            guidance_scale=plan.guidance,
            generator=torch_generator(plan.seed),
            output_type="np",
            callback_on_step_end=step_callback(total, "video", progress, cancel),
            **kwargs,
        )
        frames = frames_to_uint8(output.frames)
        if audio_pipe is None:
            return Clip(frames, plan.fps, None, None)
        on_step = step_callback(total, "audio", progress, cancel, offset=plan.steps)
        sound = audio_pipe(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt or None,
            audio_end_in_s=plan.seconds,
            num_inference_steps=plan.steps,
            guidance_scale=self.audio_guidance,
            generator=torch_generator(plan.seed),
            output_type="pt",
            # Stable Audio still uses the old per-step callback signature.
            callback=lambda step, timestep, latents: on_step(audio_pipe, step, timestep, {}),
            callback_steps=1,
        )
        sample_rate = int(audio_pipe.vae.sampling_rate)
        audio = fit_audio(audio_to_float32(sound.audios), sample_rate, frames.shape[0], plan.fps)
        return Clip(frames, plan.fps, audio, sample_rate)


@hookimpl
def register_backends(register):
    register(WanBackend(), aliases=("wan2.2", "wan-2.2"))
