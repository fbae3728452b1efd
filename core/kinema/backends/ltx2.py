"""LTX-2: picture and sound from one diffusion transformer, in one pass."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from kinema import licences, models
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
from kinema.backends.ltx2_conditioning import condition as apply_conditioning
from kinema.backends.previews import ltx2_preview
from kinema.clip import Clip, fit_audio
from kinema.hookspecs import hookimpl
from kinema.progress import CancelToken, Progress


class LTX2Backend(Backend):
    name = "ltx2"
    description = "LTX-2 text/image to video with audio in one pass"
    default_model = "Lightricks/LTX-2"
    defaults = Defaults(width=768, height=512, fps=24, seconds=5.0, steps=40, guidance=4.0)
    size_multiple = 32
    frame_multiple = 8
    min_frames = 9
    supports_remix = True
    max_start_frames = 17  # two latent frames of motion to continue from
    max_cameos = 1  # through the conditioning image (see ltx2_conditioning)
    supports_speech = True
    family = "ltx2"
    limits = Limits(
        frames=497,
        pixels=3840 * 2176,
        steps=100,
        seconds=20.0,
        why="LTX-2 as Lightricks serves it: up to 4K, 20 s and 500 frames (20 s at 25 fps, 10 s at"
        " 50 fps) a clip; 497 is the last 8k+1 frame count in that",
    )
    # Extra pipeline arguments for this checkpoint family (the tiny model turns off the extra guidance passes).
    pipeline_kwargs: ClassVar[dict[str, Any]] = {}

    def __init__(self, model: str | None = None, *, components: dict | None = None, device: str | None = None):
        self.model_id = model or self.default_model
        self._components = components  # already-built modules: tests, or a host that loaded them itself
        self._device = device
        self._pipe: Any = None

    def for_model(self, model: str) -> LTX2Backend:
        return type(self)(model, device=self._device)

    def status(self) -> BackendStatus:
        device = self._device or pick_device()
        if self._components is not None or models.is_present(self.model_id):
            return BackendStatus(True, f"{self.model_id} ready", device)
        return BackendStatus(
            False, f"{self.model_id} not downloaded: run `{licences.pull_command(self.model_id)}`", device
        )

    def _model_path(self):
        return models.resolve(self.model_id)

    def pipeline(self) -> Any:
        """The text-to-video pipeline; weights load here, on the first job."""
        if self._pipe is not None:
            return self._pipe
        from diffusers import LTX2Pipeline

        device = self._device or pick_device()
        if self._components is not None:
            pipe = LTX2Pipeline(**self._components)
            pipe.set_progress_bar_config(disable=True)
            self._pipe = pipe.to(device)
            return self._pipe
        pipe, _policy = load_pipeline(LTX2Pipeline, self._model_path(), device, self.load_dtype(device), self.memory)
        return pipe

    def unload(self) -> None:
        self._pipe = None

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
        from PIL import Image

        pipe = placed = self.pipeline()
        kwargs: dict[str, Any] = {}
        if request.image is not None:
            from diffusers import LTX2ImageToVideoPipeline

            # Same modules, different sampling loop: nothing is loaded twice.
            pipe = LTX2ImageToVideoPipeline(**pipe.components)
            pipe.set_progress_bar_config(disable=True)
            kwargs["image"] = Image.fromarray(request.image)
        elif request.video is not None or request.start_frames is not None:
            from diffusers import LTX2ConditionPipeline
            from diffusers.pipelines.ltx2.pipeline_ltx2_condition import LTX2VideoCondition

            pipe = LTX2ConditionPipeline(**pipe.components)
            pipe.set_progress_bar_config(disable=True)
            if request.video is not None:
                # Remix: the whole source conditions every frame; the weaker the conditioning, the more the prompt wins.
                strength = DEFAULT_STRENGTH if request.strength is None else request.strength
                condition = LTX2VideoCondition(
                    frames=fit_frame_count(request.video, plan.num_frames), strength=1.0 - strength
                )
            else:
                # Extend: the first frames are the clip's last ones, kept as they are; the rest continues their motion.
                condition = LTX2VideoCondition(frames=request.start_frames, strength=1.0)
            kwargs["conditions"] = [condition]
        if conditioning:
            pipe = apply_conditioning(pipe, request, plan, conditioning, kwargs)
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
                    num_frames=plan.num_frames,
                    frame_rate=float(plan.fps),
                    num_inference_steps=plan.steps,
                    guidance_scale=plan.guidance,
                    generator=torch_generator(plan.seed),
                    output_type="np",
                    callback_on_step_end=step_callback(
                        plan.steps,
                        "video",
                        progress,
                        cancel,
                        preview=ltx2_preview(pipe, plan.num_frames, plan.height, plan.width) if preview else None,
                    ),
                    **self.pipeline_kwargs,
                    **kwargs,
                ),
                metadata,
                placed=placed,
            )
        frames = frames_to_uint8(output.frames)
        audio = sample_rate = None
        if request.audio:
            sample_rate = int(pipe.vocoder.config.output_sampling_rate)
            audio = fit_audio(audio_to_float32(output.audio), sample_rate, frames.shape[0], plan.fps)
        clip = Clip(frames, plan.fps, audio, sample_rate)
        clip.metadata.update(metadata)
        return clip

    def lighten_memory(self) -> str | None:
        return step_down(self.pipeline())


@hookimpl
def register_backends(register):
    register(LTX2Backend(), aliases=("ltx-2",))
