"""LTX-2: picture and sound from one diffusion transformer, in one pass."""

from __future__ import annotations

import dataclasses
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
from kinema.backends.limits import Limits, check_plan
from kinema.backends.loading import load_pipeline, step_down
from kinema.backends.lora import loras_loaded
from kinema.backends.ltx2_checkpoint import Checkpoint
from kinema.backends.ltx2_checkpoint import read as read_checkpoint
from kinema.backends.ltx2_conditioning import condition as apply_conditioning
from kinema.backends.ltx2_refine import SIGMAS as REFINE_SIGMAS
from kinema.backends.ltx2_refine import Refiner, first_stage_guidance
from kinema.backends.ltx2_refine import active as refiner_active
from kinema.backends.ltx2_refine import choose as choose_refiner
from kinema.backends.previews import ltx2_preview
from kinema.clip import Clip, fit_audio
from kinema.errors import InvalidRequestError
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
    supports_last_frame = True  # a condition at the last latent frame (LTX2ConditionPipeline)
    has_second_stage = True  # when the checkpoint folder has a latent upsampler (plan checks it)
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
    # The two-stage recipe's refining pass: the distilled second-stage sigmas Lightricks publishes, one step each,
    # run by distilled weights where the checkpoint has them (kinema.backends.ltx2_refine).
    refine_sigmas: ClassVar[tuple[float, ...]] = REFINE_SIGMAS

    def __init__(self, model: str | None = None, *, components: dict | None = None, device: str | None = None):
        self.model_id = model or self.default_model
        self._components = components  # already-built modules: tests, or a host that loaded them itself
        self._device = device
        self._pipe: Any = None
        self._upsampler: Any = None

    def for_model(self, model: str) -> LTX2Backend:
        return type(self)(model, device=self._device)

    def status(self) -> BackendStatus:
        device = self._device or pick_device()
        if self._components is None and single_file.is_single_file(self.model_id):
            return BackendStatus(*single_file.status(self.model_id, self.family), device)
        if self._components is not None or models.is_present(self.model_id):
            return BackendStatus(True, f"{self.model_id} ready", device)
        return BackendStatus(False, models.missing_detail(self.model_id), device)

    def _model_path(self):
        if single_file.is_single_file(self.model_id):
            return single_file.model_path(self.model_id, self.family)
        return models.resolve(self.model_id)

    def require_weights(self, request=None) -> None:
        if self._components is None:
            self._model_path()  # raises MissingWeightsError, before diffusers is imported

    def checkpoint(self) -> Checkpoint | None:
        """What the pulled checkpoint folder says about itself (JSON only), or None when there is none."""
        if self._components is not None or single_file.is_single_file(self.model_id):
            return None  # a single file carries no folder of configs to read; its variant's limits are the class's
        if not models.is_present(self.model_id):
            return None
        return read_checkpoint(models.resolve(self.model_id))

    def job_limits(self) -> Limits:
        """The class's limits, narrowed to the checkpoint's positional extent (kinema.backends.ltx2_checkpoint)."""
        checkpoint = self.checkpoint()
        return checkpoint.limits(self.limits) if checkpoint is not None else self.limits

    def plan(self, request) -> Plan:
        plan = super().plan(request)
        checkpoint = self.checkpoint()
        upsampler = checkpoint.upsampler if checkpoint is not None else None
        want = request.two_stage
        if want is None:
            want = plan.tier == "final" and upsampler is not None  # the final tier's path when it can
        if not want:
            return plan
        if upsampler is None:
            if checkpoint is None:
                self.require_weights()  # not downloaded: say that (409 on the server), not that it lacks a stage
            raise InvalidRequestError(
                f"two_stage: {self.model_id} has no latent upsampler (a latent_upsampler/ folder), so it has no second"
                " stage; ask for one stage (--one-stage, or two_stage false) or use a checkpoint that has one"
            )
        conditioned = [
            what
            for what, present in (
                ("a remix", request.video is not None),
                ("an extension", request.start_frames is not None),
                ("a last frame", request.last_image is not None),
                ("a cameo", bool(request.cameos)),
                ("a speech line", request.speech is not None),
                ("a dialogue line", request.dialogue is not None),
            )
            if present
        ]
        if conditioned:
            note = f"one stage: the two-stage recipe makes text and image to video, not {conditioned[0]}"
            return dataclasses.replace(plan, notes=(*plan.notes, note))
        notes = list(plan.notes)
        width, height = (_snap_up(side, 2 * self.size_multiple) for side in (plan.width, plan.height))
        if (width, height) != (plan.width, plan.height):
            notes.append(
                f"two-stage: {plan.width}x{plan.height} is not a multiple of {2 * self.size_multiple} (half of it"
                f" must be a multiple of {self.size_multiple}); using {width}x{height}"
            )
        notes.append(
            f"two-stage: {width // 2}x{height // 2} in {plan.steps} steps, the latent upsampler x2, then"
            f" {len(self.refine_sigmas)} refining steps at {width}x{height} with {choose_refiner(checkpoint).describe()}"
        )
        two = dataclasses.replace(plan, width=width, height=height, notes=tuple(notes), two_stage=True)
        check_plan(two, self)
        return two

    def upsampler(self, device: str, dtype: Any) -> Any:
        """The checkpoint's latent upsampler, loaded on first use of the two-stage recipe."""
        if self._upsampler is None:
            from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel

            checkpoint = self.checkpoint()
            assert checkpoint is not None and checkpoint.upsampler is not None  # plan checked it
            model = LTX2LatentUpsamplerModel.from_pretrained(checkpoint.upsampler, torch_dtype=dtype)
            self._upsampler = model.to(device).eval()
        return self._upsampler

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
        self._upsampler = None

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
        if request.last_image is not None:
            from diffusers import LTX2ConditionPipeline
            from diffusers.pipelines.ltx2.pipeline_ltx2_condition import LTX2VideoCondition

            pipe = LTX2ConditionPipeline(**pipe.components)
            pipe.set_progress_bar_config(disable=True)
            # Keyframes: the last latent frame (index -1) is the given picture, and the first one when there is one.
            ends = [(request.image, 0)] if request.image is not None else []
            kwargs["conditions"] = [
                LTX2VideoCondition(frames=Image.fromarray(picture), index=index, strength=1.0)
                for picture, index in [*ends, (request.last_image, -1)]
            ]
        elif request.image is not None:
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
        refine = len(self.refine_sigmas) if plan.two_stage else 0
        refiner = choose_refiner(self.checkpoint()) if plan.two_stage else None
        # The first (or only) pass: at half size when two-stage, where it hands its latents on.
        first_width, first_height = (plan.width // 2, plan.height // 2) if plan.two_stage else (plan.width, plan.height)
        guidance = {**self.pipeline_kwargs, **first_stage_guidance(self.checkpoint(), plan.guidance)}
        with loras_loaded(pipe, request.loras, self.name):
            output = run_cached(
                pipe,
                plan,
                lambda: pipe(
                    prompt=request.prompt,
                    negative_prompt=request.negative_prompt or None,
                    width=first_width,
                    height=first_height,
                    num_frames=plan.num_frames,
                    frame_rate=float(plan.fps),
                    num_inference_steps=plan.steps,
                    generator=torch_generator(plan.seed),
                    output_type="latent" if plan.two_stage else "np",
                    callback_on_step_end=step_callback(
                        plan.steps + refine,
                        "video",
                        progress,
                        cancel,
                        preview=ltx2_preview(pipe, plan.num_frames, first_height, first_width) if preview else None,
                    ),
                    **guidance,
                    **kwargs,
                ),
                metadata,
                placed=placed,
            )
            if plan.two_stage:
                assert refiner is not None
                output = self._refine(pipe, request, plan, output, kwargs, refiner, progress, cancel)
        metadata["recipe"] = (
            {
                "path": "two-stage",
                "first_stage": f"{first_width}x{first_height}",
                "upsampler": self.checkpoint().upsampler.name,  # type: ignore[union-attr]  # plan checked it
                "refine_steps": refine,
                "refiner": refiner.recorded() if refiner is not None else None,
            }
            if plan.two_stage
            else {"path": "one-stage"}
        )
        frames = frames_to_uint8(output.frames)
        audio = sample_rate = None
        if request.audio:
            sample_rate = int(pipe.vocoder.config.output_sampling_rate)
            audio = fit_audio(audio_to_float32(output.audio), sample_rate, frames.shape[0], plan.fps)
        clip = Clip(frames, plan.fps, audio, sample_rate)
        clip.metadata.update(metadata)
        return clip

    def _refine(self, pipe, request, plan: Plan, first, kwargs, refiner: Refiner, progress, cancel) -> Any:
        """The two-stage recipe after its first pass: the video latents doubled by the latent upsampler, then
        video and sound refined together at full size in a few steps from the distilled second-stage sigmas."""
        from diffusers import FlowMatchEulerDiscreteScheduler, LTX2LatentUpsamplePipeline

        cancel.raise_if_cancelled()
        device = pipe._execution_device
        upsample = LTX2LatentUpsamplePipeline(vae=pipe.vae, latent_upsampler=self.upsampler(device, pipe.vae.dtype))
        upsample.set_progress_bar_config(disable=True)
        latents = upsample(
            latents=first.frames,
            height=plan.height // 2,
            width=plan.width // 2,
            num_frames=plan.num_frames,
            output_type="latent",
            return_dict=False,
        )[0]
        # Given sigmas, not a shifted schedule: the refining pass starts part-way down, where the upsampled clip is.
        scheduler = FlowMatchEulerDiscreteScheduler.from_config(
            pipe.scheduler.config, use_dynamic_shifting=False, shift_terminal=None
        )
        second = type(pipe)(**{**pipe.components, "scheduler": scheduler})
        second.set_progress_bar_config(disable=True)
        sigmas = list(self.refine_sigmas)
        # Distilled weights run without guidance: their arguments override the backend's own.
        guidance = {**self.pipeline_kwargs, **refiner.guidance(plan.guidance)}
        with refiner_active(second, refiner, request.loras):
            return second(
                prompt=request.prompt,
                negative_prompt=request.negative_prompt or None,
                width=plan.width,
                height=plan.height,
                num_frames=plan.num_frames,
                frame_rate=float(plan.fps),
                num_inference_steps=len(sigmas),
                sigmas=sigmas,
                noise_scale=sigmas[0],
                latents=latents,
                audio_latents=first.audio,
                generator=torch_generator(plan.seed + 1),
                output_type="np",
                callback_on_step_end=step_callback(
                    plan.steps + len(sigmas), "video", progress, cancel, offset=plan.steps
                ),
                **guidance,
                **kwargs,
            )

    def lighten_memory(self) -> str | None:
        return step_down(self.pipeline())


def _snap_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


@hookimpl
def register_backends(register):
    register(LTX2Backend(), aliases=("ltx-2",))
