"""The generation request, validated where it enters kinema."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal, Union, overload

import numpy as np

from kinema.cameo.store import MAX_CAMEOS_PER_REQUEST, check_identity, check_ref
from kinema.errors import InvalidRequestError
from kinema.media.files import MediaError, read_image
from kinema.media.tts import check_line
from kinema.tiers import DEFAULT_TIER, MAX_STEPS, check_tier

DEFAULT_BACKEND = "tiny"  # the backend a request, the CLI, the server and a storyboard use when none is named

# A request's limits, checked here for every caller (CLI, server, storyboards, hosts); a backend's own, smaller
# limits for one generation live in kinema.backends.limits.
MAX_PROMPT_CHARS = 4000
MAX_SECONDS = 60.0  # one clip, one extension or one storyboard shot
MAX_FPS = 120.0
MIN_SIDE, MAX_SIDE = 16, 4096
# MAX_STEPS (denoising steps) is imported from kinema.tiers, which also caps a tier's steps with it.
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
    seconds: float | None = None
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    seed: int | None = None
    steps: int | None = None
    guidance: float | None = None
    style: str | None = None
    image: Any = field(default=None, repr=False)  # first frame: path or uint8 [H, W, 3]
    # Last frame: the clip ends on this picture (backends with ``supports_last_frame``); with ``image``, both ends.
    last_image: Any = field(default=None, repr=False)  # path or uint8 [H, W, 3]
    audio: bool = True
    backend: str = DEFAULT_BACKEND
    model: str | None = None
    # Remix (video-to-video): the source frames, and how far to move away from them (0 keeps, 1 ignores).
    video: Any = field(default=None, repr=False)  # uint8 [T, H, W, 3]
    strength: float | None = None
    # Extend: the clip first re-creates these frames (the end of the clip being extended), then continues.
    start_frames: Any = field(default=None, repr=False)  # uint8 [T, H, W, 3]
    # LoRA weights for this clip, as ((safetensors path, weight), ...); styles add theirs (kinema.styles).
    loras: tuple = ()
    # Cameos: people to put in the clip, used only with their owners' consent for ``user``.
    cameos: tuple[str, ...] = ()
    # A recorded line the clip's sound follows: audio file, (mono float32, rate), or one of ``cameos`` (its voice).
    speech: Any = field(default=None, repr=False)
    # A line of dialogue to speak (kinema.media.tts): in the voice of the cameo ``speech`` names, or of the request's
    # only cameo, or the voice model's own without one; the spoken line then drives the clip as a speech line does.
    dialogue: str | None = None
    user: str | None = (
        None  # who is asking: the server passes the key's identity; None is kinema.cameo.store.local_user()
    )
    tier: str = DEFAULT_TIER  # quality tier: draft, standard or final (kinema.tiers.TIERS)
    # LTX-2.x's two-stage recipe (half size, latent upsampler x2, a few refining steps): None lets the tier
    # choose (final, when the checkpoint has a latent upsampler), True asks for it, False never.
    two_stage: bool | None = None

    def __post_init__(self) -> None:
        _check_text("prompt", self.prompt, required=True)
        _check_text("negative_prompt", self.negative_prompt or "", required=False)
        check_seconds(self.seconds, hint=f"for longer films, use a storyboard of shots up to {MAX_SECONDS:g} s each")
        _check_range("fps", self.fps, 1.0, MAX_FPS)
        for name in ("width", "height"):
            _check_int(name, getattr(self, name), MIN_SIDE, MAX_SIDE)
        _check_int("seed", self.seed, 0, MAX_SEED)
        _check_int("steps", self.steps, 1, MAX_STEPS)
        check_tier(self.tier)
        if self.two_stage not in (None, True, False):
            raise InvalidRequestError(f"two_stage must be true, false or null; got {self.two_stage!r}")
        _check_range("guidance", self.guidance, 0.0, MAX_GUIDANCE)
        if not isinstance(self.backend, str) or not self.backend.strip():
            raise InvalidRequestError("backend must be a backend name; see `kinema backends`")
        if self.image is not None:
            object.__setattr__(self, "image", _load_image(self.image))
        if self.last_image is not None:
            object.__setattr__(self, "last_image", _load_image(self.last_image, name="last_image"))
        for name in ("video", "start_frames"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, _check_frames(name, getattr(self, name)))
        _check_range("strength", self.strength, 0.0, 1.0, open_low=True)
        if self.strength is not None and self.video is None:
            raise InvalidRequestError("strength applies to a remix: give the source video too")
        object.__setattr__(self, "loras", _check_loras(self.loras))
        given = [name for name in ("image", "video", "start_frames") if getattr(self, name) is not None]
        if len(given) > 1:
            raise InvalidRequestError(
                f"give only one of image (first frame), video (remix) or start_frames (extend), got {' and '.join(given)}"
            )

        if self.last_image is not None and (self.video is not None or self.start_frames is not None):
            raise InvalidRequestError(
                "last_image ends a new clip: it cannot be combined with video (remix) or start_frames (extend)"
            )
        _check_cameo_fields(self)

    def with_(self, **changes: Any) -> GenerationRequest:
        return replace(self, **changes)


def seconds_problem(value: Any) -> str | None:
    """The one rule for a length in seconds (a clip, an extension, a shot): a finite number in (0, MAX_SECONDS].

    What is wrong with ``value`` ("not a number", "too short" or "too long"), else None. ``check_seconds`` words
    it for a request; the storyboard check words it for a storyboard's line.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, Fraction)) or not math.isfinite(value):
        return "not a number"
    if value <= 0:
        return "too short"
    if value > MAX_SECONDS:
        return "too long"
    return None


@overload
def check_seconds(value: Any, *, name: str = ..., hint: str = ..., required: Literal[True]) -> float: ...


@overload
def check_seconds(value: Any, *, name: str = ..., hint: str = ..., required: bool = ...) -> float | None: ...


def check_seconds(value: Any, *, name: str = "seconds", hint: str = "", required: bool = False) -> float | None:
    """``value`` if it is a length in seconds kinema accepts (``seconds_problem``), else InvalidRequestError."""
    if value is None and not required:
        return None
    problem = seconds_problem(value)
    if problem == "not a number":
        raise InvalidRequestError(f"{name} must be a number, got {value!r}")
    if problem is not None:
        message = f"{name} must be in (0, {MAX_SECONDS:g}], got {value:g}"
        raise InvalidRequestError(f"{message}; {hint}" if hint and problem == "too long" else message)
    return float(value)


def seconds_to_frames(seconds: float | Fraction, fps: float | Fraction) -> int:
    """How many frames ``seconds`` lasts at ``fps``, rounded once and exactly (a float's error never tips it).

    Every place that turns seconds into frames uses this, so a clip, an extension and a storyboard's shots
    agree to the frame. Fractions are used as given (a storyboard's running total stays exact).
    """
    exact = seconds if isinstance(seconds, Fraction) else Fraction(seconds).limit_denominator(10**6)
    return round(exact * Fraction(fps))


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


def _check_loras(loras: Any) -> tuple:
    if not isinstance(loras, (tuple, list)):
        raise InvalidRequestError(f"loras must be a list of (path, weight) pairs, got {type(loras).__name__}")
    checked = []
    for entry in loras:
        if not (isinstance(entry, (tuple, list)) and len(entry) == 2 and isinstance(entry[0], (str, os.PathLike))):
            raise InvalidRequestError(f"each LoRA must be a (path, weight) pair, got {entry!r}")
        path, weight = os.fspath(entry[0]), entry[1]
        _check_range("LoRA weight", float("nan") if weight is None else weight, -4.0, 4.0)
        if not path.endswith(".safetensors"):
            raise InvalidRequestError(f"LoRA {path!r} must be a .safetensors file (kinema loads no pickled weights)")
        checked.append((path, float(weight)))
    return tuple(checked)


def _check_frames(name: str, frames: Any) -> np.ndarray:
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        shape = list(frames.shape) if isinstance(frames, np.ndarray) else type(frames).__name__
        raise InvalidRequestError(f"{name} must be uint8 frames [T, H, W, 3], got {shape}")
    if frames.shape[0] < 1 or min(frames.shape[1:3]) < MIN_SIDE:
        raise InvalidRequestError(
            f"{name} must have at least one frame of at least {MIN_SIDE}x{MIN_SIDE}, got {list(frames.shape)}"
        )
    return frames


def _load_image(image: Any, name: str = "image") -> np.ndarray:
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise InvalidRequestError(f"{name} must be uint8 [H, W, 3], got {image.dtype} {list(image.shape)}")
        if min(image.shape[:2]) < MIN_SIDE:
            raise InvalidRequestError(
                f"{name} is {image.shape[1]}x{image.shape[0]}; use one at least {MIN_SIDE} px on each side"
            )
        return image
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise InvalidRequestError(f"{name} {str(path)!r} does not exist or is not a file")
        try:
            return _load_image(read_image(path), name)
        except MediaError as error:
            raise InvalidRequestError(
                f"{name} {str(path)!r} is not a readable picture (PNG, JPEG or WebP): {error}"
            ) from None
    raise InvalidRequestError(f"{name} must be a file path or a uint8 array, got {type(image).__name__}")


def _check_cameo_fields(request: GenerationRequest) -> None:
    cameos = request.cameos
    if isinstance(cameos, str):
        cameos = (cameos,)
    if not isinstance(cameos, (tuple, list)):
        raise InvalidRequestError(f"cameos must be a list of cameo names, got {type(cameos).__name__}")
    cameos = tuple(check_ref(name) for name in cameos)
    if len(set(cameos)) != len(cameos):
        raise InvalidRequestError(f"cameos lists a name twice: {list(cameos)}")
    if len(cameos) > MAX_CAMEOS_PER_REQUEST:
        raise InvalidRequestError(f"at most {MAX_CAMEOS_PER_REQUEST} cameos per clip, got {len(cameos)}")
    object.__setattr__(request, "cameos", cameos)
    if request.user is not None:
        check_identity(request.user)
    speech = request.speech
    if request.dialogue is not None:
        object.__setattr__(request, "dialogue", check_line(request.dialogue))
        if speech is not None and not (isinstance(speech, str) and speech in cameos):
            raise InvalidRequestError(
                "dialogue is spoken in a cameo's voice: speech must name one of the request's cameos (whose voice"
                " speaks it) or be left out, not a recording"
            )
        if speech is None and len(cameos) > 1:
            raise InvalidRequestError(
                f"dialogue: say whose voice speaks it: set speech to one of the cameos ({', '.join(cameos)})"
            )
    if speech is None or (isinstance(speech, str) and speech in cameos):
        return
    if isinstance(speech, tuple) and len(speech) == 2 and isinstance(speech[0], np.ndarray):
        if speech[0].size == 0 or not isinstance(speech[1], (int, np.integer)) or speech[1] <= 0:
            raise InvalidRequestError("speech as (audio, sample_rate) needs samples and a positive rate")
        return
    if not isinstance(speech, (str, os.PathLike)):
        raise InvalidRequestError(
            f"speech must be an audio file or the name of one of the cameos, got {type(speech).__name__}"
        )
    if not Path(speech).is_file():
        hint = " (to use a cameo's voice, list the cameo too)" if isinstance(speech, str) and "/" not in speech else ""
        raise InvalidRequestError(f"speech {str(speech)!r} is not an audio file{hint}")
