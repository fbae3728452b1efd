"""What the kinema nodes do, as plain functions with no ComfyUI import.

ComfyUI's side (progress bar, interrupt, memory manager, folders) reaches
these functions through a small ``host`` object; ``NullHost`` stands in
outside ComfyUI, so CI runs the same code the nodes run.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

import kinema
from kinema.backends.base import Backend
from kinema.clip import Clip, fit_audio
from kinema.errors import GenerationCancelled, InvalidRequestError, MissingWeightsError
from kinema.progress import CancelToken, Progress
from kinema.tiers import DEFAULT_TIER, check_tier

from . import licence_logic
from .cameo_logic import request_fields
from .single_files import MODELS_OWN, missing_hint, single_file_choices, with_parts
from .spec import DEFAULT_MODEL, STORYBOARD_TIER

SILENCE_SAMPLE_RATE = 48000  # the AUDIO output's rate when the clip has no sound
MODEL_FOLDER = "kinema"  # ComfyUI's models/<name> folder for kinema models
LORA_FOLDER = "loras"  # ComfyUI's models/loras, where its own LoRA loaders look


class NullHost:
    """The host outside ComfyUI: no progress bar, never interrupted, no shared memory manager."""

    previews = False

    def progress(self, step: int, total: int, preview: np.ndarray | None) -> None:
        pass

    def interrupted(self) -> bool:
        return False

    def raise_interrupt(self) -> None:
        raise GenerationCancelled("generation cancelled")

    def before_generate(self, backend: Backend) -> None:
        pass

    def after_generate(self, backend: Backend) -> None:
        pass


@dataclass(frozen=True)
class ModelHandle:
    """What flows from Kinema Model Loader to Kinema Generate: a configured backend, weights not yet loaded."""

    backend: Backend
    label: str
    loras: tuple[tuple[str, float], ...] = ()  # (safetensors path, weight), from Kinema LoRA nodes
    licences: tuple[str, ...] = ()  # a line per model it runs: its licence (licence_logic.licence_lines)

    def __repr__(self) -> str:  # ComfyUI shows node outputs in some errors
        loras = "".join(f" + {Path(path).stem} x{weight:g}" for path, weight in self.loras)
        return f"<kinema {self.backend.name}: {self.label}{loras}>"


def check_handle(handle: Any) -> ModelHandle:
    if not isinstance(handle, ModelHandle):
        raise InvalidRequestError("model must come from a Kinema Model Loader node")
    return handle


# --------------------------------------------------------------------------- models


def model_folders() -> list[Path]:
    """Where model folders are looked for: ComfyUI's models/kinema (and extra_model_paths.yaml), then kinema's own."""
    from kinema.home import models_dir

    return [*comfyui_folders(MODEL_FOLDER), models_dir()]


def comfyui_folders(kind: str) -> list[Path]:
    """ComfyUI's folders for ``kind`` (its models/<kind> and extra_model_paths.yaml's); none outside ComfyUI."""
    try:
        import folder_paths  # ComfyUI's module: only importable inside ComfyUI

        return [Path(p) for p in folder_paths.get_folder_paths(kind)]
    except (ImportError, KeyError):
        return []


def model_choices() -> dict[str, str]:
    """Model folders by the name shown in the loader: pulled hub ids as ``owner/name``, other folders by name."""
    from kinema.home import models_dir

    own = models_dir().resolve()
    choices: dict[str, str] = {}
    for folder in model_folders():
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir()):
            if not (entry / "model_index.json").is_file() or entry.name.startswith("kinema--tiny-"):
                continue  # the tiny demo models belong to the tiny backends
            if folder.resolve() == own and "--" in entry.name:
                choices.setdefault(entry.name.replace("--", "/", 1), entry.name.replace("--", "/", 1))
            else:
                choices.setdefault(entry.name, str(entry))
    # Single-file LTX-2 and Wan checkpoints from ComfyUI's own checkpoints and diffusion_models folders.
    for name, path in single_file_choices().items():
        choices.setdefault(name, path)
    return choices


def load_model(
    backend: str,
    model: str = DEFAULT_MODEL,
    precision: str = "auto",
    memory: str = "auto",
    model_id: str = "",
    device: str | None = None,
    accept_license: bool = False,
    text_encoder: str = MODELS_OWN,
    vae: str = MODELS_OWN,
) -> ModelHandle:
    """Pick and configure a backend; checks the weights are here and their licences accepted (a restricted one
    needs ``accept_license``, or a pull that accepted it), loads nothing yet. ``text_encoder`` and ``vae`` name
    files from ComfyUI's models/text_encoders and models/vae for a single-file checkpoint."""
    chosen_backend = kinema.get_backend(backend)
    wanted = (model_id or "").strip()
    if not wanted and model and model != DEFAULT_MODEL:
        choices = model_choices()
        if model not in choices:
            raise MissingWeightsError(
                f"model {model!r} is no longer in {', '.join(map(str, model_folders()))};"
                " press R in ComfyUI to refresh the list"
            )
        wanted = choices[model]
    wanted, label = with_parts(wanted, text_encoder, vae)
    if wanted and wanted != chosen_backend.model_id:
        if chosen_backend.is_demo:
            raise InvalidRequestError(
                f"backend {chosen_backend.name!r} runs only its built-in demo model: set model to"
                f" {DEFAULT_MODEL!r} and clear model_id, or pick the ltx2 or wan backend"
            )
        chosen_backend = chosen_backend.for_model(wanted)
    configured = chosen_backend.configure(precision=precision, memory=memory, device=device)
    status = configured.status()
    if not status.ready:
        raise MissingWeightsError(status.detail + missing_hint(wanted, status.detail))
    shown = licence_logic.check_accepted(configured, accept_license)
    return ModelHandle(configured, label or configured.model_id, licences=tuple(shown))


# --------------------------------------------------------------------------- LoRAs


def lora_folders() -> list[Path]:
    """Where LoRAs are looked for: ComfyUI's models/loras (and extra_model_paths.yaml), then kinema's own."""
    from kinema.home import kinema_home

    return [*comfyui_folders(LORA_FOLDER), kinema_home() / "loras"]


def lora_choices() -> dict[str, str]:
    """LoRA files by the name the LoRA node lists (relative to their folder, as ComfyUI's LoRA loaders show them).

    Only ``.safetensors``: kinema loads no pickled weights.
    """
    choices: dict[str, str] = {}
    for folder in lora_folders():
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*.safetensors")):
            choices.setdefault(path.relative_to(folder).as_posix(), str(path))
    return choices


def add_lora(handle: ModelHandle, lora: str, weight: float = 1.0) -> ModelHandle:
    """Kinema LoRA: ``handle`` with one more LoRA, loaded for each clip made with it (as a style's LoRAs are)."""
    handle = check_handle(handle)
    choices = lora_choices()
    if lora not in choices:
        raise InvalidRequestError(
            f"LoRA {lora!r} is not in {', '.join(map(str, lora_folders()))}: put .safetensors LoRAs in"
            f" ComfyUI's models/{LORA_FOLDER} and press R to refresh the list"
        )
    if not -4.0 <= weight <= 4.0:
        raise InvalidRequestError(f"LoRA weight must be from -4 to 4, got {weight:g}")
    if weight == 0:
        return handle
    return dataclasses.replace(handle, loras=(*handle.loras, (choices[lora], float(weight))))


# --------------------------------------------------------------------------- ComfyUI types <-> kinema arrays


def first_frame(image: Any) -> np.ndarray | None:
    """ComfyUI IMAGE (float [B, H, W, C] in 0..1) -> uint8 [H, W, 3] of its first image."""
    if image is None:
        return None
    array = image.detach().float().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image, np.float32)
    if array.ndim == 4:
        if array.shape[0] < 1:
            raise InvalidRequestError("image is an empty batch: connect a node that outputs a picture")
        array = array[0]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise InvalidRequestError(
            f"image must be a ComfyUI IMAGE [batch, height, width, channels], got {list(array.shape)}"
        )
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return (np.clip(array[..., :3], 0.0, 1.0) * 255.0).round().astype(np.uint8)


def frames_to_image(frames: np.ndarray) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> ComfyUI IMAGE float32 [T, H, W, 3] in 0..1."""
    return torch.from_numpy(np.ascontiguousarray(frames)).to(torch.float32).div_(255.0)


def image_to_frames(images: Any) -> np.ndarray:
    """ComfyUI IMAGE float [T, H, W, C] in 0..1 -> uint8 [T, H, W, 3]."""
    array = (
        images.detach().float().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images, np.float32)
    )
    if array.ndim != 4 or array.shape[0] < 1 or array.shape[-1] not in (1, 3, 4):
        raise InvalidRequestError(
            f"images must be a ComfyUI IMAGE batch [frames, height, width, channels], got {list(array.shape)}"
        )
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return (np.clip(array[..., :3], 0.0, 1.0) * 255.0).round().astype(np.uint8)


def speech_line(audio: Any) -> tuple[np.ndarray, int] | None:
    """ComfyUI AUDIO -> a mono speech line ``(float32 [N], rate)`` for ``GenerationRequest.speech``."""
    if audio is None:
        return None
    samples, rate = audio_to_array(audio)
    return samples.mean(axis=0).astype(np.float32), rate


def comfy_clip(images: Any, fps: Any, audio: Any = None, metadata: dict | None = None) -> Clip:
    """A kinema Clip from ComfyUI frames (IMAGE), a frame rate and optional sound (AUDIO), to extend or remix."""
    frames = image_to_frames(images)
    try:
        rate = Fraction(fps).limit_denominator(1001) if not isinstance(fps, Fraction) else fps
    except (TypeError, ValueError):
        raise InvalidRequestError(f"fps must be a number, got {fps!r}") from None
    if not 0 < rate <= 240:
        raise InvalidRequestError(f"fps must be in (0, 240], got {float(rate):g}")
    sound = sample_rate = None
    if audio is not None:
        sound, sample_rate = audio_to_array(audio)
        sound = fit_audio(sound, sample_rate, frames.shape[0], rate)
    return Clip(frames, rate, sound, sample_rate, dict(metadata or {}))


def source_clip(video: tuple | None, images: Any = None, audio: Any = None, fps: float = 24.0) -> Clip:
    """The clip Extend or Remix builds on: ``video`` as (IMAGE, frame rate, AUDIO or None), or ``images`` at ``fps``.

    ``audio``, if connected, is the clip's sound (with a video: instead of the video's own).
    """
    if (video is None) == (images is None):
        raise InvalidRequestError(
            "connect the clip as video (e.g. Load Video) or as images (frames), one of them"
            + (", not both" if video is not None else "")
        )
    if video is not None:
        video_images, video_fps, video_audio = video
        return comfy_clip(video_images, video_fps, audio if audio is not None else video_audio)
    return comfy_clip(images, fps, audio)


def clip_to_audio(clip: Clip) -> dict:
    """The clip's sound as ComfyUI AUDIO ``{"waveform": float32 [1, C, N], "sample_rate"}``; silence if it has none."""
    if clip.audio is None:
        samples = round(clip.frame_count * SILENCE_SAMPLE_RATE / clip.fps)
        return {"waveform": torch.zeros(1, 1, samples), "sample_rate": SILENCE_SAMPLE_RATE}
    return {"waveform": torch.from_numpy(clip.audio.copy())[None], "sample_rate": int(clip.sample_rate)}


def audio_to_array(audio: Any) -> tuple[np.ndarray, int]:
    """ComfyUI AUDIO -> float32 [C, N] in -1..1 (first of a batch) and its sample rate."""
    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise InvalidRequestError("audio must be a ComfyUI AUDIO (a dict with waveform and sample_rate)")
    wave = audio["waveform"]
    array = wave.detach().float().cpu().numpy() if isinstance(wave, torch.Tensor) else np.asarray(wave, np.float32)
    if array.ndim == 3:
        array = array[0]
    if array.ndim != 2 or array.shape[0] not in (1, 2) or array.shape[1] < 1:
        raise InvalidRequestError(
            f"audio waveform must be [batch, 1 or 2 channels, samples], got {list(np.shape(wave))}"
        )
    return np.clip(array, -1.0, 1.0).astype(np.float32), int(audio["sample_rate"])


# --------------------------------------------------------------------------- nodes


def tier_steps(steps: int, tier: str) -> int | None:
    """Generate's steps widget is the standard tier's: draft and final scale it by their factor (``kinema.tiers``).

    0 (workflows saved before the widget showed real values) is None, the model's default for the tier.
    """
    from kinema.tiers import TIERS

    if not steps:
        return None
    entry = TIERS[check_tier(tier)]
    return max(int(entry["min_steps"]), round(steps * entry["steps_factor"]))


def _run_hosted(handle: ModelHandle, host: Any, run: Any) -> Any:
    """``run(progress, cancel, preview)`` with the host's progress bar, previews, interrupt and memory manager.

    Progress goes to ``host.progress`` every step; when ``host.interrupted()``
    turns true the run stops at that step and ``host.raise_interrupt()`` raises
    the host's own exception, which this function never catches.
    """
    token = CancelToken()

    def on_progress(event: Progress) -> None:
        if host.interrupted():
            token.cancel()
            token.raise_if_cancelled()  # stops here, at the end of this step
        host.progress(event.step, event.total, event.preview)

    if host.interrupted():
        host.raise_interrupt()
    host.before_generate(handle.backend)
    try:
        return run(on_progress, token, bool(getattr(host, "previews", False)))
    except GenerationCancelled:
        if host.interrupted():
            host.raise_interrupt()
        raise
    finally:
        host.after_generate(handle.backend)


def generate(
    handle: ModelHandle,
    prompt: str,
    negative_prompt: str = "",
    seconds: float = 0.0,
    width: int = 0,
    height: int = 0,
    fps: float = 0.0,
    steps: int = 0,
    guidance: float = -1.0,
    seed: int = 0,
    style: str = "none",
    audio: bool = True,
    image: Any = None,
    host: Any = None,
    cameo: Any = None,
    tier: str = DEFAULT_TIER,
    last_image: Any = None,
    speech: Any = None,
) -> tuple[torch.Tensor, dict, Clip]:
    """Kinema Generate: (IMAGE frames, AUDIO, the clip). 0 (or -1 for guidance) means the model's default.

    ``tier`` (draft, standard or final; ``kinema.tiers``) picks the step caching
    and scales ``steps`` (the standard tier's; ``tier_steps``); ``guidance`` wins.
    ``last_image`` is the frame the clip ends on (backends that can: ltx2);
    ``speech`` (AUDIO) a recorded line the clip follows, picture and sound (ltx2).
    The handle's LoRAs (Kinema LoRA) are loaded for this clip.

    Progress and interrupts: see ``_run_hosted``.
    """
    handle = check_handle(handle)
    host = host or NullHost()
    fields = request_fields(cameo)
    if speech is not None:
        if fields.get("speech"):
            raise InvalidRequestError(
                "two speech lines: the cameo speaks (Kinema Cameo's speak) and speech is connected; use one"
            )
        fields["speech"] = speech_line(speech)
    request = kinema.GenerationRequest(
        prompt=prompt,
        negative_prompt=negative_prompt or "",
        seconds=seconds or None,
        fps=fps or None,
        width=width or None,
        height=height or None,
        seed=int(seed),
        steps=tier_steps(steps, tier or DEFAULT_TIER),
        guidance=None if guidance is None or guidance < 0 else guidance,
        style=None if style in (None, "", "none") else style,
        image=first_frame(image),
        last_image=first_frame(last_image),
        audio=bool(audio),
        backend=handle.backend.name,
        tier=tier or DEFAULT_TIER,
        loras=handle.loras,
        **fields,
    )
    clip = _run_hosted(
        handle,
        host,
        lambda progress, cancel, preview: kinema.generate(
            request, progress=progress, cancel=cancel, backend=handle.backend, preview=preview
        ),
    )
    return frames_to_image(clip.frames), clip_to_audio(clip), clip


def storyboard(
    handle: ModelHandle,
    text: str,
    seed: int = 0,
    width: int = 0,
    height: int = 0,
    fps: float = 0.0,
    steps: int = 0,
    style: str = "none",
    audio: bool = True,
    image: Any = None,
    host: Any = None,
    tier: str = STORYBOARD_TIER,
) -> tuple[torch.Tensor, dict, Clip]:
    """Kinema Storyboard: (IMAGE frames, AUDIO, the film). 0 means the storyboard's value, else the model's default.

    ``tier`` sets every shot's quality tier; ``STORYBOARD_TIER`` (or empty) keeps the storyboard's own.

    Progress, previews and interrupts work as in ``generate``, across all the shots.
    """
    from kinema.storyboard import parse_storyboard, run_storyboard

    handle = check_handle(handle)
    if handle.loras:
        raise InvalidRequestError(
            "Kinema LoRA feeds Generate, Extend and Remix; for a storyboard, name the LoRA in a style"
            " (its loras list) and pick that style"
        )
    host = host or NullHost()
    chosen_tier = None if tier in (None, "", STORYBOARD_TIER) else check_tier(tier)
    board = parse_storyboard(text or "", source="storyboard").with_(
        backend=handle.backend.name,
        seed=int(seed),
        width=width or None,
        height=height or None,
        fps=fps or None,
        steps=steps or None,
        audio=bool(audio),
        tier=chosen_tier,
    )
    if style not in (None, "", "none"):
        board = board.with_(world=dataclasses.replace(board.world, style=style))
    film = _run_hosted(
        handle,
        host,
        lambda progress, cancel, preview: (
            run_storyboard(
                board,
                backend=handle.backend,
                progress=progress,
                cancel=cancel,
                start_image=first_frame(image),
                preview=preview,
            ).film
        ),
    )
    return frames_to_image(film.frames), clip_to_audio(film), film


def extend(
    handle: ModelHandle,
    source: Clip,
    prompt: str,
    seconds: float,
    negative_prompt: str = "",
    seed: int = 0,
    tier: str = DEFAULT_TIER,
    host: Any = None,
) -> tuple[torch.Tensor, dict, Clip]:
    """Kinema Extend: ``source`` followed by ``seconds`` more, continued from its last frames (kinema.extend).

    The result is the whole longer clip; its sound is crossfaded across the seam (silence before it when
    the source had none). Progress and interrupts as in ``generate``.
    """
    from kinema.extend import ExtendRequest
    from kinema.extend import extend as run_extend

    handle = check_handle(handle)
    host = host or NullHost()
    request = ExtendRequest(
        source=source,
        seconds=seconds,
        prompt=prompt or None,
        negative_prompt=negative_prompt or None,
        seed=int(seed),
        tier=check_tier(tier or DEFAULT_TIER),
        backend=handle.backend.name,
        loras=handle.loras,
    )
    clip = _run_hosted(
        handle,
        host,
        lambda progress, cancel, preview: run_extend(
            request, progress=progress, cancel=cancel, backend_obj=handle.backend, preview=preview
        ),
    )
    return frames_to_image(clip.frames), clip_to_audio(clip), clip


def remix(
    handle: ModelHandle,
    source: Clip,
    prompt: str,
    strength: float,
    negative_prompt: str = "",
    seed: int = 0,
    keep_audio: bool = False,
    tier: str = DEFAULT_TIER,
    host: Any = None,
) -> tuple[torch.Tensor, dict, Clip]:
    """Kinema Remix: ``source`` redone to follow ``prompt``, ``strength`` from near 0 (keep) to 1 (only the prompt).

    Same length, size and frame rate; new sound for the new prompt unless ``keep_audio``.
    """
    from kinema.remix import RemixRequest
    from kinema.remix import remix as run_remix

    handle = check_handle(handle)
    host = host or NullHost()
    request = RemixRequest(
        source=source,
        prompt=prompt,
        strength=float(strength),
        negative_prompt=negative_prompt or "",
        seed=int(seed),
        tier=check_tier(tier or DEFAULT_TIER),
        keep_audio=bool(keep_audio),
        backend=handle.backend.name,
        loras=handle.loras,
    )
    clip = _run_hosted(
        handle,
        host,
        lambda progress, cancel, preview: run_remix(
            request, progress=progress, cancel=cancel, backend_obj=handle.backend, preview=preview
        ),
    )
    return frames_to_image(clip.frames), clip_to_audio(clip), clip


def edited_clip(clip: Clip, images: Any = None, audio: Any = None) -> Clip:
    """``clip`` with its frames and/or sound replaced by ones edited downstream; provenance says which."""
    if not isinstance(clip, Clip):
        raise InvalidRequestError("clip must come from a Kinema Generate node")
    if images is None and audio is None:
        return clip
    frames = clip.frames if images is None else image_to_frames(images)
    metadata = dict(clip.metadata)
    replaced = [name for name, value in (("frames", images), ("audio", audio)) if value is not None]
    metadata["edited_in_comfyui"] = replaced
    if audio is not None:
        sound, sample_rate = audio_to_array(audio)
    else:
        sound, sample_rate = clip.audio, clip.sample_rate
    if sound is not None:
        # The clip keeps its frame rate; sound is trimmed or padded to the picture so the two stay in sync.
        sound = fit_audio(sound, sample_rate, frames.shape[0], clip.fps)
    return Clip(frames, Fraction(clip.fps), sound, sample_rate, metadata)


def workflow_tags(prompt: Any = None, extra_pnginfo: Any = None) -> dict[str, str]:
    """ComfyUI's own MP4 keys (``prompt``, ``workflow``), so dropping the clip on ComfyUI reopens its workflow."""
    tags: dict[str, str] = {}
    if isinstance(extra_pnginfo, dict):
        tags.update({str(key): json.dumps(value) for key, value in extra_pnginfo.items()})
    if prompt is not None:
        tags["prompt"] = json.dumps(prompt)
    return tags


def save_clip(
    clip: Clip,
    path: str | os.PathLike[str],
    images: Any = None,
    audio: Any = None,
    extra_tags: dict[str, str] | None = None,
) -> Path:
    """Kinema Save Clip: an MP4 with sound and kinema's metadata, written atomically."""
    return edited_clip(clip, images, audio).save(path, extra_tags=extra_tags)
