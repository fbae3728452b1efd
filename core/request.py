"""The generation request, validated where it enters kinema."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from .errors import InvalidRequestError

MAX_PROMPT_CHARS = 4000
MAX_SECONDS = 60.0
MAX_FPS = 120.0
MIN_SIDE, MAX_SIDE = 16, 4096
MAX_STEPS = 500
MAX_GUIDANCE = 50.0
MAX_SEED = 2**63 - 1

ImageInput = Union[str, "os.PathLike[str]", np.ndarray, None]


@dataclass(frozen=True)
class GenerationRequest:
    """What to generate. ``None`` means "the backend's default" for that field.

    Backends snap sizes and frame counts to what their model accepts and report
    the values they used in the clip's metadata.
    """

    prompt: str
    negative_prompt: str = ""
    seconds: Optional[float] = None
    fps: Optional[float] = None
    width: Optional[int] = None
    height: Optional[int] = None
    seed: Optional[int] = None
    steps: Optional[int] = None
    guidance: Optional[float] = None
    style: Optional[str] = None
    image: Any = field(default=None, repr=False)  # first frame: path or uint8 [H, W, 3]
    audio: bool = True
    backend: str = "tiny"
    model: Optional[str] = None

    def __post_init__(self) -> None:
        _check_text("prompt", self.prompt, required=True)
        _check_text("negative_prompt", self.negative_prompt or "", required=False)
        _check_range("seconds", self.seconds, 0.0, MAX_SECONDS, open_low=True,
                     hint=f"for longer films, use a storyboard of shots up to {MAX_SECONDS:g} s each")
        _check_range("fps", self.fps, 1.0, MAX_FPS)
        for name in ("width", "height"):
            _check_int(name, getattr(self, name), MIN_SIDE, MAX_SIDE)
        _check_int("seed", self.seed, 0, MAX_SEED)
        _check_int("steps", self.steps, 1, MAX_STEPS)
        _check_range("guidance", self.guidance, 0.0, MAX_GUIDANCE)
        if not isinstance(self.backend, str) or not self.backend.strip():
            raise InvalidRequestError("backend must be a backend name; see `kinema backends`")
        if self.image is not None:
            object.__setattr__(self, "image", _load_image(self.image))

    def with_(self, **changes: Any) -> "GenerationRequest":
        return replace(self, **changes)


def _check_text(name: str, value: Any, *, required: bool) -> None:
    if not isinstance(value, str):
        raise InvalidRequestError(f"{name} must be text, got {type(value).__name__}")
    if required and not value.strip():
        raise InvalidRequestError(f"{name} is empty: describe the clip you want")
    if len(value) > MAX_PROMPT_CHARS:
        raise InvalidRequestError(f"{name} is {len(value)} characters; keep it under {MAX_PROMPT_CHARS}")


def _check_range(name: str, value: Any, low: float, high: float, *, open_low: bool = False, hint: str = "") -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidRequestError(f"{name} must be a number, got {value!r}")
    too_low = value <= low if open_low else value < low
    if too_low or value > high:
        bracket = "(" if open_low else "["
        message = f"{name} must be in {bracket}{low:g}, {high:g}], got {value:g}"
        raise InvalidRequestError(f"{message}; {hint}" if hint and value > high else message)


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidRequestError(f"{name} must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise InvalidRequestError(f"{name} must be between {low} and {high}, got {value}")


def _load_image(image: Any) -> np.ndarray:
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise InvalidRequestError(
                f"image must be uint8 [H, W, 3], got {image.dtype} {list(image.shape)}"
            )
        if min(image.shape[:2]) < MIN_SIDE:
            raise InvalidRequestError(f"image is {image.shape[1]}x{image.shape[0]}; use one at least {MIN_SIDE} px on each side")
        return image
    if isinstance(image, (str, os.PathLike)):
        from .media import MediaError, read_image

        path = Path(image)
        if not path.is_file():
            raise InvalidRequestError(f"image {str(path)!r} does not exist or is not a file")
        try:
            return _load_image(read_image(path))
        except MediaError as error:
            raise InvalidRequestError(f"image {str(path)!r} is not a readable picture (PNG, JPEG or WebP): {error}") from None
    raise InvalidRequestError(f"image must be a file path or a uint8 array, got {type(image).__name__}")
