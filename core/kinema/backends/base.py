"""What every backend shares: planning a request onto a model's grid, and running diffusers steps."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from kinema.backends import memory
from kinema.backends.device import PLACEMENT_POLICIES, PRECISIONS, pick_dtype
from kinema.backends.limits import Limits, check_plan
from kinema.backends.memory import current
from kinema.backends.step_cache import CacheConfig, step_cache, supported
from kinema.errors import InvalidRequestError
from kinema.media import tts
from kinema.progress import CancelToken, Progress
from kinema.request import seconds_to_frames
from kinema.tiers import DEFAULT_TIER, settings

if TYPE_CHECKING:
    from kinema.clip import Clip
    from kinema.request import GenerationRequest


@dataclass(frozen=True)
class Plan:
    """The concrete values a backend will run with, after snapping the request to its model."""

    width: int
    height: int
    num_frames: int
    fps: Fraction
    steps: int
    guidance: float
    seed: int
    notes: tuple[str, ...] = ()
    tier: str = DEFAULT_TIER  # see kinema.tiers
    # Step-cache settings (kinema.backends.step_cache.CacheConfig fields), None: off. Not hashed, so plans stay hashable.
    cache: dict[str, Any] | None = field(default=None, hash=False)
    # LTX-2.x's two-stage recipe: half size, the latent upsampler x2, a few refining steps (kinema.backends.ltx2).
    two_stage: bool = False

    @property
    def seconds(self) -> float:
        return float(self.num_frames / self.fps)


@dataclass(frozen=True)
class BackendStatus:
    ready: bool
    detail: str
    device: str = "cpu"


@dataclass(frozen=True)
class Defaults:
    width: int
    height: int
    fps: float
    seconds: float
    steps: int
    guidance: float


class Backend:
    """A model family behind one ``generate`` entry point.

    Subclasses set the class attributes and implement ``status`` and ``_run``.
    Weights load on the first job, never at registration.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    defaults: ClassVar[Defaults]
    size_multiple: ClassVar[int]  # width and height must be multiples of this
    frame_multiple: ClassVar[int]  # frame counts are frame_multiple * k + 1
    min_frames: ClassVar[int]
    supports_image: ClassVar[bool] = True
    supports_remix: ClassVar[bool] = False  # video-to-video from ``request.video`` at ``request.strength``
    max_start_frames: ClassVar[int] = 1  # how many leading frames an extend can condition on (1: the first frame)
    supports_last_frame: ClassVar[bool] = False  # can end a clip on ``request.last_image``
    # Has a second stage (LTX-2.x's two-stage recipe, kinema.backends.ltx2): a request's ``two_stage`` True is
    # refused by backends without one rather than ignored, so a client never believes it got what it did not.
    has_second_stage: ClassVar[bool] = False
    # Cameos (people) one clip can carry, and whether a recorded speech line can drive the clip. Backends that
    # allow either get ``conditioning=`` (kinema.cameo.store.Conditioning: consented cameos, speech) in ``generate``.
    max_cameos: ClassVar[int] = 0
    supports_speech: ClassVar[bool] = False
    makes_audio: ClassVar[bool] = True
    is_demo: ClassVar[bool] = False
    # What the CLI's note calls a demo backend, after "Note: '<name>' is".
    demo_note: ClassVar[str] = "kinema's tiny demo model (random weights: expect coloured noise and noise for sound)"
    family: ClassVar[str] = ""  # model family the tier table keys its settings by ("ltx2", "wan")
    # The largest single generation (kinema.backends.limits): frames, pixels a frame, steps, seconds, and why.
    # ``plan`` refuses a request beyond them, or beyond what memory holds, before anything runs.
    limits: ClassVar[Limits] = Limits()
    _device: str | None  # where a backend that places weights itself puts them (with_options may set it)

    model_id: str = ""
    # Load options (hosts set them with ``configure``): None/"auto" let kinema pick per device.
    precision: str | None = None  # "bf16", "fp16" or "fp32"
    memory: str = "auto"  # see PLACEMENT_POLICIES in kinema.backends.device

    def configure(self, *, precision: str | None = None, memory: str = "auto", device: str | None = None) -> Backend:
        """A copy of this backend that loads its weights in ``precision`` with placement ``memory`` (on ``device``).

        The registered backend is shared by every caller in the process, so it is never changed in place.
        """
        import copy

        if precision not in (None, "auto", *PRECISIONS):
            raise InvalidRequestError(f"precision must be one of auto, {', '.join(PRECISIONS)}; got {precision!r}")
        if memory not in PLACEMENT_POLICIES:
            raise InvalidRequestError(f"memory must be one of {', '.join(PLACEMENT_POLICIES)}; got {memory!r}")
        clone = copy.copy(self)
        clone.precision = None if precision == "auto" else precision
        clone.memory = memory
        if device:
            clone._device = device  # the host's device (ComfyUI's), rather than kinema's own pick
        return clone

    def load_dtype(self, device: str) -> Any:
        """The torch dtype to load weights in on ``device``: the configured precision, else kinema's pick."""
        return PRECISIONS[self.precision]() if self.precision else pick_dtype(device)

    def status(self) -> BackendStatus:
        raise NotImplementedError

    def unload(self) -> None:
        """Drop loaded weights so another model can use the memory."""

    def job_limits(self) -> Limits:
        """The largest single generation (``limits``); a backend may narrow it to the checkpoint it runs."""
        return self.limits

    def require_weights(self, request: GenerationRequest | None = None) -> None:
        """Raise ``MissingWeightsError`` if the weights ``request`` needs are not on this machine.

        Cheap (it looks at folders, imports no torch or diffusers), so a job without weights is refused at once;
        backends whose weights are always there keep this default.
        """

    def snap_fps(self, fps: float) -> float:
        """The frame rate this backend makes when asked for ``fps``: most make any; a trained toy makes its own."""
        return fps

    def plan(self, request: GenerationRequest) -> Plan:
        if request.image is not None and not self.supports_image:
            raise InvalidRequestError(
                f"backend {self.name!r} cannot start from an image; drop --image or pick another backend"
            )
        if getattr(request, "last_image", None) is not None and not self.supports_last_frame:
            raise InvalidRequestError(
                f"backend {self.name!r} cannot end a clip on a given last frame; use ltx2 (or tiny-ltx2), or drop"
                " the last frame"
            )
        if request.video is not None and not self.supports_remix:
            raise InvalidRequestError(
                f"backend {self.name!r} cannot remix a video; pick a backend that can (tiny, ltx2, tiny-wan, wan)"
            )
        if request.start_frames is not None:
            count = len(request.start_frames)
            if not self.supports_image or count > self.max_start_frames or (count - 1) % self.frame_multiple:
                raise InvalidRequestError(
                    f"backend {self.name!r} continues from {self.frame_multiple}k+1 frames, at most"
                    f" {self.max_start_frames if self.supports_image else 0}; got {count}"
                )
        if request.cameos and len(request.cameos) > self.max_cameos:
            raise InvalidRequestError(
                f"backend {self.name!r} cannot put {len(request.cameos)} cameo(s) in a clip (at most {self.max_cameos});"
                " use ltx2 (one cameo) or wan-vace (up to 4)"
            )
        if request.speech is not None and not self.supports_speech:
            raise InvalidRequestError(f"backend {self.name!r} cannot follow a speech line; use ltx2 (or tiny)")
        if getattr(request, "dialogue", None) is not None and not self.supports_speech:
            raise InvalidRequestError(
                f"backend {self.name!r} cannot follow a speech line, so it cannot speak a dialogue line; use ltx2"
                " (or tiny-ltx2)"
            )
        if getattr(request, "dialogue", None) is not None:
            tts.require_model()  # no voice model: refused now (with the pull commands), not when the job starts
        if getattr(request, "two_stage", None) and not self.has_second_stage:
            raise InvalidRequestError(
                f"two_stage: backend {self.name!r} has no second stage (the two-stage recipe is LTX-2.x's, with a"
                " checkpoint that has a latent upsampler); use ltx2 with such a checkpoint, or ask for one stage"
                " (--one-stage, or two_stage false)"
            )
        d = self.defaults
        notes: list[str] = []
        width = _snap(request.width or d.width, self.size_multiple, "width", notes)
        height = _snap(request.height or d.height, self.size_multiple, "height", notes)
        fps = Fraction(request.fps or d.fps).limit_denominator(1001)
        seconds = request.seconds or d.seconds
        wanted = max(1, seconds_to_frames(seconds, fps))
        k = max(round((wanted - 1) / self.frame_multiple), (self.min_frames - 1) // self.frame_multiple)
        num_frames = self.frame_multiple * k + 1
        if num_frames != wanted:
            notes.append(
                f"{seconds:g} s at {float(fps):g} fps is {wanted} frames; {self.name} makes {self.frame_multiple}k+1 frames,"
                f" so the clip has {num_frames} ({float(num_frames / fps):.3f} s)"
            )
        seed = request.seed if request.seed is not None else secrets.randbelow(2**32)
        tier = settings(
            getattr(request, "tier", DEFAULT_TIER),
            self.family,
            default_steps=d.steps,
            default_guidance=d.guidance,
            model_id=self.model_id,
            steps=request.steps,
            guidance=request.guidance,
        )
        plan = Plan(
            width,
            height,
            num_frames,
            fps,
            tier.steps,
            tier.guidance,
            seed,
            (*notes, *tier.notes),
            tier=tier.tier,
            cache=tier.cache,
        )
        check_plan(plan, self)
        return plan

    def lighten_memory(self) -> str | None:
        """After an out-of-memory: put the loaded weights under a lighter memory policy and say how, or None."""
        return None

    def generate(
        self,
        request: GenerationRequest,
        plan: Plan,
        *,
        progress: Callable[[Progress], None],
        cancel: CancelToken,
    ) -> Clip:
        raise NotImplementedError


DEFAULT_STRENGTH = 0.6  # remix: keeps the source's layout and motion, lets the prompt change the look


def fit_frame_count(frames: np.ndarray, count: int) -> np.ndarray:
    """``frames`` cut or extended (holding the last frame) to exactly ``count`` frames."""
    if len(frames) >= count:
        return frames[:count]
    return np.concatenate([frames, np.repeat(frames[-1:], count - len(frames), axis=0)])


def run_cached(
    pipe: Any,
    plan: Plan,
    call: Callable[[], Any],
    metadata: dict[str, Any],
    placed: Any = None,
    steps: int | None = None,
) -> Any:
    """``call()`` with the plan's step cache on ``pipe``'s transformer(s).

    Records the cache (and the memory policy ``placed``, the loaded pipeline, runs under) in ``metadata``.
    """
    placement = placed if placed is not None else pipe
    name, device = current(placement)
    metadata["memory_policy"] = name
    transformers = [
        t for t in (getattr(pipe, "transformer", None), getattr(pipe, "transformer_2", None)) if t is not None
    ]
    # The opt-in speed paths (kinema.backends.memory): recorded only when asked for.
    compiled = memory.compile_for_clip(placement, transformers, plan.tier, steps or plan.steps)
    if compiled is not None:
        metadata["compile"] = compiled
    if os.environ.get(memory.ATTENTION_ENV):
        metadata["attention"] = os.environ[memory.ATTENTION_ENV]
    with memory.attention(transformers, device or str(getattr(pipe, "device", "cpu"))):
        if not plan.cache:
            return call()
        if not all(supported(t) for t in transformers):
            metadata["cache"] = None  # e.g. VACE blocks: their extra streams are not described yet, so run uncached
            return call()
        with step_cache(transformers, CacheConfig.from_dict(plan.cache), steps=steps or plan.steps) as stats:
            result = call()
    metadata["cache"] = {**plan.cache, "blocks_computed": round(stats.fraction, 4)}
    return result


def _snap(value: int, multiple: int, name: str, notes: list[str]) -> int:
    snapped = max(multiple, int(round(value / multiple)) * multiple)
    if snapped != value:
        notes.append(f"{name} {value} is not a multiple of {multiple}; using {snapped}")
    return snapped


def step_callback(
    total: int,
    stage: str,
    progress: Callable[[Progress], None],
    cancel: CancelToken,
    preview: Callable[[Any], np.ndarray | None] | None = None,
    offset: int = 0,
) -> Callable[..., dict]:
    """A diffusers ``callback_on_step_end`` that reports each step and stops within one step of a cancel.

    Raising from the callback is what stops the pipeline: diffusers' own
    ``interrupt`` flag only skips the remaining steps and still decodes.
    ``offset`` lets a second pass (audio after video) continue one progress bar.
    """

    def on_step_end(pipe: Any, step: int, timestep: Any, callback_kwargs: dict) -> dict:
        cancel.raise_if_cancelled()
        image = preview(callback_kwargs) if preview is not None else None
        progress(Progress(step=offset + step + 1, total=total, stage=stage, preview=image))
        return {}

    return on_step_end


def frames_to_uint8(frames: Any) -> np.ndarray:
    """Pipeline frames (float [0, 1], [B, T, H, W, C] or [T, H, W, C]) -> uint8 [T, H, W, 3]."""
    array = frames.detach().float().cpu().numpy() if hasattr(frames, "detach") else np.asarray(frames)
    if array.ndim == 5:
        array = array[0]
    return (np.clip(array, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def audio_to_float32(audio: Any) -> np.ndarray:
    """Pipeline audio ([B, C, N], [C, N] or [N]) -> float32 [C, N] in [-1, 1]."""
    array = audio.detach().float().cpu().numpy() if hasattr(audio, "detach") else np.asarray(audio, dtype=np.float32)
    if array.ndim == 3:
        array = array[0]
    if array.ndim == 1:
        array = array[None, :]
    return np.clip(array, -1.0, 1.0).astype(np.float32)


def torch_generator(seed: int) -> Any:
    import torch

    # A CPU generator gives the same noise on every device, so seeds reproduce across machines.
    return torch.Generator(device="cpu").manual_seed(seed)
