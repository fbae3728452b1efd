"""Voice lines: a line of dialogue spoken in a voice continued from a recorded sample, by a text-to-speech model
that loads through transformers itself.

The model is Dia (Nari Labs, ``nari-labs/Dia-1.6B-0626``, Apache-2.0), with its audio codec DAC
(``descript/dac_44khz``, MIT): Dia continues a voice from an audio prompt given with its transcript, so a cameo's
recorded sample becomes the voice a new line is spoken in. Both load from safetensors, offline, without remote code:
``kinema models pull`` them, or point ``KINEMA_VOICE_MODEL`` at a folder (a ``codec/`` folder inside it is used
before the pulled codec). ``chatterbox-tts`` would pin torch, diffusers and transformers, so it is not used.

The line comes back as mono float32 at the codec's rate (44.1 kHz for DAC 44 kHz); callers resample it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kinema import models as model_store
from kinema.errors import InvalidRequestError, MissingWeightsError
from kinema.media.speech import resample

DEFAULT_VOICE_MODEL = "nari-labs/Dia-1.6B-0626"
DEFAULT_CODEC = "descript/dac_44khz"
VOICE_MODEL_ENV = "KINEMA_VOICE_MODEL"
CODEC_FOLDER = "codec"
ENABLE_HINT = (
    f"`kinema models pull {DEFAULT_VOICE_MODEL}` and `kinema models pull {DEFAULT_CODEC}` (Apache-2.0 and MIT), or set"
    f" {VOICE_MODEL_ENV} to a Dia model folder (safetensors; a {CODEC_FOLDER}/ folder inside it holds its DAC codec)"
)
MAX_LINE_CHARS = 600
MAX_LINE_SECONDS = 20.0  # what one clip can carry (LTX-2's longest); the line is cut to the clip anyway
MAX_PROMPT_SECONDS = 10.0  # Dia's card: 5-10 s of the voice to continue is enough, and more crowds out the line
# Dia's card's sampling settings: greedy decoding loops on one sound.
SAMPLING = {"do_sample": True, "temperature": 1.8, "top_p": 0.90, "top_k": 45, "guidance_scale": 3.0}


@dataclass(frozen=True)
class SpokenLine:
    """A synthetic line: its samples, their rate, and what made it (for the clip's provenance)."""

    audio: np.ndarray  # mono float32 in [-1, 1]
    rate: int
    model: str
    prompt_seconds: float  # how much of the voice sample the model continued (0: its own voice)
    transcript: str | None  # what the voice sample says, as given to the model


def voice_model_folder() -> Path | None:
    """The installed voice model's folder: ``KINEMA_VOICE_MODEL``, else the pulled default, else None."""
    return model_store.transformers_folder(VOICE_MODEL_ENV, DEFAULT_VOICE_MODEL, "Dia model")


def codec_folder(model: Path) -> Path:
    """The DAC codec beside the model: its own ``codec/`` folder, else the pulled default."""
    inside = model / CODEC_FOLDER
    if (inside / "config.json").is_file():
        return inside
    if model_store.pulled_transformers(DEFAULT_CODEC):
        return model_store.local_dir_for(DEFAULT_CODEC)
    raise MissingWeightsError(
        f"the voice model {model.name} needs its audio codec: `kinema models pull {DEFAULT_CODEC}` (MIT), or put a"
        f" DAC model folder at {inside}"
    )


def status() -> tuple[bool, str]:
    """(voice lines possible, a line for `kinema doctor`)."""
    try:
        folder = voice_model_folder()
        if folder is not None:
            codec_folder(folder)
    except MissingWeightsError as error:
        return False, f"off: {error}"
    if folder is None:
        return False, f"off: dialogue lines need a voice model: {ENABLE_HINT}"
    return True, f"on: lines spoken by {folder.name}"


def require_model() -> Path:
    folder = voice_model_folder()
    if folder is None:
        raise MissingWeightsError(f"a dialogue line needs a voice model, and none is installed: {ENABLE_HINT}")
    codec_folder(folder)
    return folder


_loaded: dict[tuple[str, float], Any] = {}


def _load(folder: Path, device: str) -> tuple[Any, Any]:
    """(model, processor) of a Dia folder and its codec: safetensors only, offline, kept for the next line."""
    key = (f"{folder}@{device}", (folder / "config.json").stat().st_mtime)
    if key not in _loaded:
        from transformers import DacModel, DiaFeatureExtractor, DiaForConditionalGeneration, DiaProcessor, DiaTokenizer

        dtype = _dtype(device)
        model: Any = DiaForConditionalGeneration.from_pretrained(
            folder, use_safetensors=True, local_files_only=True, dtype=dtype
        )
        codec: Any = DacModel.from_pretrained(codec_folder(folder), use_safetensors=True, local_files_only=True)
        # Built from its parts: a pulled Dia's processor config names its codec by hub id, which would download.
        processor = DiaProcessor(
            DiaFeatureExtractor.from_pretrained(folder, local_files_only=True),
            DiaTokenizer.from_pretrained(folder, local_files_only=True),
            codec.to(device).eval(),
        )
        _loaded.clear()  # one voice model in memory at a time
        _loaded[key] = (model.to(device).eval(), processor)
    return _loaded[key]


def _dtype(device: str) -> Any:
    import torch

    return torch.float32 if device == "cpu" else torch.bfloat16


def check_line(text: Any) -> str:
    """A dialogue line kinema can speak: some words, at most ``MAX_LINE_CHARS`` characters, one speaker."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequestError("dialogue must be the words to speak, e.g. 'Welcome aboard.'")
    if len(text) > MAX_LINE_CHARS:
        raise InvalidRequestError(f"dialogue is {len(text)} characters; keep one line under {MAX_LINE_CHARS}")
    if "[S1]" in text or "[S2]" in text:
        raise InvalidRequestError("dialogue is one speaker's line: leave out [S1]/[S2] (kinema adds the speaker tag)")
    return text.strip()


def speak(
    text: str,
    *,
    voice: tuple[np.ndarray, int] | None = None,
    transcript: str | None = None,
    seconds: float | None = None,
    seed: int = 0,
    folder: Path | None = None,
    device: str | None = None,
) -> SpokenLine:
    """``text`` spoken in ``voice`` (mono samples and their rate, continued from up to ``MAX_PROMPT_SECONDS``), or
    in the model's own voice without one; at most ``seconds`` long (``MAX_LINE_SECONDS`` when None).

    ``transcript`` is what the voice sample says (the model reads it before the new line, as Dia's voice cloning
    expects); without one the model hears the voice alone. The same arguments and ``seed`` give the same samples.
    """
    import torch

    text = check_line(text)
    folder = folder or require_model()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, processor = _load(folder, device)
    rate = int(processor.feature_extractor.sampling_rate)
    hop = int(processor.feature_extractor.hop_length)
    delay = list(model.config.delay_pattern)
    script = f"[S1] {text}"
    audio_prompt = None
    prompt_seconds = 0.0
    if voice is not None:
        samples = resample(np.asarray(voice[0], np.float32), int(voice[1]), rate)[: int(MAX_PROMPT_SECONDS * rate)]
        prompt_seconds = samples.shape[0] / rate
        audio_prompt = [samples]
        if transcript:
            script = f"[S1] {transcript.strip()} {script}"
    inputs = processor(text=[script], audio=audio_prompt, padding=True, return_tensors="pt").to(device)
    prompt_len = processor.get_audio_prompt_len(inputs["decoder_attention_mask"])
    limit = min(seconds or MAX_LINE_SECONDS, MAX_LINE_SECONDS)
    new_frames = math.ceil(limit * rate / hop) + max(delay) + 1
    devices = [torch.device(device)] if device.startswith("cuda") else []
    with torch.random.fork_rng(devices=devices), torch.inference_mode():
        torch.manual_seed(seed)
        if devices:
            torch.cuda.manual_seed(seed)
        codes = model.generate(**inputs, max_new_tokens=new_frames, **SAMPLING)
        spoken = processor.batch_decode(codes, audio_prompt_len=prompt_len)[0]
    audio = np.clip(spoken.float().cpu().numpy().reshape(-1), -1.0, 1.0).astype(np.float32)
    codec_rate = int(processor.audio_tokenizer.config.sampling_rate)
    return SpokenLine(audio[: int(limit * codec_rate)], codec_rate, folder.name, prompt_seconds, transcript)
