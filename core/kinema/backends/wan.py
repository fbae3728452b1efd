"""Wan 2.2: video from Wan, sound from a Stable Audio pass matched to the clip's length."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from kinema import models
from kinema.backends import single_file
from kinema.backends.base import (
    DEFAULT_STRENGTH,
    Backend,
    BackendStatus,
    Defaults,
    Plan,
    audio_to_float32,
    fit_frame_count,
    frames_to_uint8,
    run_cached,
    step_callback,
    torch_generator,
)
from kinema.backends.device import pick_device
from kinema.backends.limits import Limits
from kinema.backends.loading import load_pipeline, step_down
from kinema.backends.lora import loras_loaded
from kinema.backends.previews import wan_preview
from kinema.clip import Clip, fit_audio
from kinema.errors import InvalidRequestError, MissingWeightsError
from kinema.hookspecs import hookimpl
from kinema.progress import CancelToken, Progress


class WanBackend(Backend):
    name = "wan"
    description = "Wan 2.2 text/image to video, with a Stable Audio sound pass"
    default_model = "Wan-AI/Wan2.2-TI2V-5B-Diffusers"
    default_audio_model = "stabilityai/stable-audio-open-1.0"
    defaults = Defaults(width=1280, height=704, fps=24, seconds=5.0, steps=50, guidance=5.0)
    size_multiple = 32  # TI2V-5B: VAE x16, patch x2
    frame_multiple = 4
    min_frames = 5
    limits = Limits(
        frames=121,
        pixels=1280 * 704,
        steps=100,
        seconds=47.0,
        why="Wan 2.2 TI2V-5B makes 121-frame (5 s at 24 fps) 720p clips; its sound pass, Stable"
        " Audio Open, makes at most 47 s",
    )
    supports_remix = True
    family = "wan"
    audio_guidance: ClassVar[float] = 7.0

    def __init__(
        self,
        model: str | None = None,
        *,
        audio_model: str | None = None,
        components: dict | None = None,
        audio_components: dict | None = None,
        device: str | None = None,
    ):
        self.model_id = model or self.default_model
        self.audio_model_id = audio_model or self.default_audio_model
        self._components = components
        self._audio_components = audio_components
        self._device = device
        self._pipes: dict[str, Any] = {}
        self._in_use: list[Any] = []  # the pipelines of the last generation, for lighten_memory

    def for_model(self, model: str) -> WanBackend:
        return type(self)(model, audio_model=self.audio_model_id, device=self._device)

    def status(self) -> BackendStatus:
        device = self._device or pick_device()
        missing = []
        problems = []
        if self._components is None and single_file.is_single_file(self.model_id):
            ready, detail = single_file.status(self.model_id, self.family)
            if not ready:
                problems.append(detail)
        elif self._components is None and not models.is_present(self.model_id):
            missing.append(self.model_id)
        if self._audio_components is None and not models.is_present(self.audio_model_id):
            missing.append(self.audio_model_id)
        if not missing and not problems:
            return BackendStatus(True, f"{self.model_id} + {self.audio_model_id} ready", device)
        return BackendStatus(False, "; ".join([*problems, *(models.missing_detail(m) for m in missing)]), device)

    def _pipeline(self, role: str) -> Any:
        if role in self._pipes:
            return self._pipes[role]
        from diffusers import StableAudioPipeline, WanPipeline

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
        pipe, _policy = load_pipeline(cls, path, device, self.load_dtype(device), self.memory)
        return pipe

    def _model_path(self, model: str):
        if single_file.is_single_file(model):
            return single_file.model_path(model, self.family)
        return models.resolve(model)

    def require_weights(self, request=None) -> None:
        if self._components is None:
            self._model_path(self.model_id)
        if self._audio_components is None and (request is None or request.audio):
            try:
                self._model_path(self.audio_model_id)
            except MissingWeightsError as error:
                raise MissingWeightsError(f"{error} (or pass --no-audio for a silent clip)") from None

    def unload(self) -> None:
        self._pipes.clear()
        self._in_use = []  # they hold the same weights: kept here, the memory would never come back

    def _remix_pipeline(self, video_pipe: Any, request, plan: Plan) -> tuple[Any, int]:
        """Wan's video-to-video pipeline on the loaded modules, and how many steps it will run."""
        from diffusers import WanVideoToVideoPipeline

        if getattr(video_pipe, "transformer_2", None) is not None:
            raise InvalidRequestError(
                f"{self.model_id} has two expert transformers, which Wan's video-to-video"
                " pipeline cannot run; remix with a single-transformer Wan such as TI2V-5B"
            )
        strength = DEFAULT_STRENGTH if request.strength is None else request.strength
        steps = min(int(plan.steps * strength), plan.steps)  # the pipeline skips the first (1 - strength) of the steps
        if steps < 1:
            raise InvalidRequestError(
                f"strength {strength:g} with {plan.steps} steps runs no step; raise --strength or --steps"
            )
        pipe = WanVideoToVideoPipeline(
            **{
                name: video_pipe.components[name]
                for name in ("tokenizer", "text_encoder", "transformer", "vae", "scheduler")
            }
        )
        # That pipeline assumes the Wan 2.1 VAE (x8); Wan 2.2 TI2V's is x16, which the loaded pipeline knows.
        pipe.vae_scale_factor_spatial = video_pipe.vae_scale_factor_spatial
        pipe.video_processor = video_pipe.video_processor
        pipe.set_progress_bar_config(disable=True)
        return pipe, steps

    def generate(
        self, request, plan: Plan, *, progress: Callable[[Progress], None], cancel: CancelToken, preview: bool = False
    ) -> Clip:
        from PIL import Image

        video_pipe = self._pipeline("video")
        audio_pipe = self._pipeline("audio") if request.audio else None
        self._in_use = [pipe for pipe in (video_pipe, audio_pipe) if pipe is not None]
        video_steps = plan.steps
        kwargs: dict[str, Any] = {}
        pipe = video_pipe
        if request.video is not None:
            pipe, video_steps = self._remix_pipeline(video_pipe, request, plan)
            kwargs["video"] = [Image.fromarray(frame) for frame in fit_frame_count(request.video, plan.num_frames)]
            kwargs["strength"] = DEFAULT_STRENGTH if request.strength is None else request.strength
        else:
            kwargs["num_frames"] = plan.num_frames  # video-to-video takes its length from the source
        total = video_steps + (plan.steps if audio_pipe is not None else 0)
        if request.image is not None or request.start_frames is not None:
            from diffusers import WanImageToVideoPipeline

            # TI2V checkpoints condition on the first frame's latents; no CLIP image encoder is involved.
            pipe = WanImageToVideoPipeline(
                **{**video_pipe.components, "image_encoder": None, "image_processor": None},
                expand_timesteps=video_pipe.config.expand_timesteps,
            )
            pipe.set_progress_bar_config(disable=True)
            first = request.image if request.image is not None else request.start_frames[-1]
            kwargs["image"] = Image.fromarray(first)
        cancel.raise_if_cancelled()
        metadata: dict[str, Any] = {}
        with loras_loaded(pipe, request.loras, self.name):
            output = run_cached(
                pipe,
                plan,
                lambda: pipe(
                    prompt=request.prompt,
                    negative_prompt=request.negative_prompt or None,
                    width=plan.width,
                    height=plan.height,
                    num_inference_steps=plan.steps,
                    guidance_scale=plan.guidance,
                    generator=torch_generator(plan.seed),
                    output_type="np",
                    callback_on_step_end=step_callback(
                        total, "video", progress, cancel, preview=wan_preview(pipe) if preview else None
                    ),
                    **kwargs,
                ),
                metadata,
                placed=video_pipe,
                steps=video_steps,
            )
        frames = frames_to_uint8(output.frames)
        if audio_pipe is None:
            clip = Clip(frames, plan.fps, None, None)
            clip.metadata.update(metadata)
            return clip
        on_step = step_callback(total, "audio", progress, cancel, offset=video_steps)
        clip = self._add_sound(audio_pipe, request, plan, frames, on_step)
        clip.metadata.update(metadata)
        return clip

    def _add_sound(self, audio_pipe: Any, request, plan: Plan, frames: Any, on_step: Callable[..., dict]) -> Clip:
        """The Stable Audio pass, trimmed or padded to exactly the picture's length."""
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

    def lighten_memory(self) -> str | None:
        # Both passes step down: either may have been the one that ran out.
        notes = [note for note in (step_down(pipe) for pipe in self._in_use) if note]
        return "; ".join(notes) or None


@hookimpl
def register_backends(register):
    register(WanBackend(), aliases=("wan2.2", "wan-2.2"))
