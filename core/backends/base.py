"""What every backend shares: planning a request onto a model's grid, and running diffusers steps."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Optional

import numpy as np

from ..progress import CancelToken, Progress

if TYPE_CHECKING:
    from ..clip import Clip
    from ..request import GenerationRequest


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
    makes_audio: ClassVar[bool] = True
    is_demo: ClassVar[bool] = False

    model_id: str = ""

    def status(self) -> BackendStatus:
        raise NotImplementedError

    def unload(self) -> None:
        """Drop loaded weights so another model can use the memory."""

    def plan(self, request: "GenerationRequest") -> Plan:
        from ..errors import InvalidRequestError

        if request.image is not None and not self.supports_image:
            raise InvalidRequestError(f"backend {self.name!r} cannot start from an image; drop --image or pick another backend")
        d = self.defaults
        notes: list[str] = []
        width = _snap(request.width or d.width, self.size_multiple, "width", notes)
        height = _snap(request.height or d.height, self.size_multiple, "height", notes)
        fps = Fraction(request.fps or d.fps).limit_denominator(1001)
        seconds = request.seconds or d.seconds
        wanted = max(1, round(seconds * fps))
        k = max(round((wanted - 1) / self.frame_multiple), (self.min_frames - 1) // self.frame_multiple)
        num_frames = self.frame_multiple * k + 1
        if num_frames != wanted:
            notes.append(
                f"{seconds:g} s at {float(fps):g} fps is {wanted} frames; {self.name} makes {self.frame_multiple}k+1 frames,"
                f" so the clip has {num_frames} ({float(num_frames / fps):.3f} s)"
            )
        seed = request.seed if request.seed is not None else secrets.randbelow(2**32)
        return Plan(width, height, num_frames, fps, request.steps or d.steps,
                    d.guidance if request.guidance is None else request.guidance, seed, tuple(notes))

    def generate(
        self,
        request: "GenerationRequest",
        plan: Plan,
        *,
        progress: Callable[[Progress], None],
        cancel: CancelToken,
    ) -> "Clip":
        raise NotImplementedError


def _snap(value: int, multiple: int, name: str, notes: list[str]) -> int:
    snapped = max(multiple, int(round(value / multiple)) * multiple)
    if snapped != value:
        notes.append(f"{name} {value} is not a multiple of {multiple}; using {snapped}")
    return snapped


def step_callback(total: int, stage: str, progress: Callable[[Progress], None], cancel: CancelToken,
                  preview: Optional[Callable[[Any], Optional[np.ndarray]]] = None, offset: int = 0) -> Callable[..., dict]:
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
