"""Proving the person at capture: the recording must show the face saying a one-time challenge.

Without a speech-recognition model installed, nothing can be checked: the cameo
is stored *unverified* (only its owner may use it) and the record says why.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np

from kinema import models as model_store
from kinema.cameo.challenge import DIGIT_WORDS, Challenge
from kinema.errors import InvalidRequestError
from kinema.media.hashing import file_sha256
from kinema.media.speech import AudioReadError, decode_audio

RECOGNIZER_RATE = 16000  # what Whisper hears

RECOGNIZER_ENV = "KINEMA_SPEECH_RECOGNIZER"
# Whisper base (English), Apache-2.0: small enough for a CPU, and it hears spoken digits well.
DEFAULT_RECOGNIZER = "openai/whisper-base.en"
ENABLE_HINT = (
    f"`kinema models pull {DEFAULT_RECOGNIZER}` (Apache-2.0, 290 MB), or set {RECOGNIZER_ENV} to a"
    " Whisper-family model folder (safetensors)"
)
# Why a verification failed: stable codes, each with its own sentence.
REASONS = ("wrong_code", "no_speech_heard", "lips_mismatch", "different_face")


class VerificationError(InvalidRequestError):
    """The recording does not prove the person; ``reason`` is one of ``REASONS``."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.source = "video"


def recognizer_folder() -> Path | None:
    """The installed speech-recognition model's folder: ``KINEMA_SPEECH_RECOGNIZER``, else the pulled default."""
    return model_store.transformers_folder(RECOGNIZER_ENV, DEFAULT_RECOGNIZER, "Whisper", InvalidRequestError)


def status() -> tuple[bool, str]:
    """(verification possible, a line for `kinema doctor`)."""
    try:
        folder = recognizer_folder()
    except InvalidRequestError as error:
        return False, f"off: {error}"
    if folder is None:
        return False, f"off: cameos are captured unverified (only their owner may use them); to verify: {ENABLE_HINT}"
    return True, f"on: speech recognised by {folder.name}"


def unverified(why: str, challenge: Challenge | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"status": "unverified", "why": why, **extra}
    if challenge is not None:
        out["challenge"] = _challenge_record(challenge)
    return out


def _challenge_record(challenge: Challenge) -> dict[str, Any]:
    return {
        "id": challenge.id,
        "digits": challenge.digits,
        "phrase": challenge.phrase,
        "issued_at": int(challenge.issued_at),
        "expires_at": int(challenge.expires_at),
    }


def verify(
    video: Path, captured: Any, challenge: Challenge | None, *, transcriber: Callable[..., str] | None = None
) -> dict[str, Any]:
    """What the capture proves about the person, for the consent record; raises ``VerificationError`` when a
    check fails: the digits said (``wrong_code``, ``no_speech_heard``), the mouth following the voice
    (``lips_mismatch``), the face that speaks being the face kept (``different_face``).

    ``transcriber(sound, rate)`` replaces the installed recogniser (tests give known transcripts).
    """
    if challenge is None:
        return unverified("captured without a challenge")
    recognizer = "given"
    if transcriber is None:
        ready, line = status()
        if not ready:
            why = "no speech-recognition model was installed at capture: " + line[len("off: ") :]
            return unverified(why, challenge)
        folder = recognizer_folder()
        recognizer = folder.name if folder is not None else "?"
        transcriber = transcribe
    frames, times, scale, sound, rate = read_recording(Path(video))
    if sound.size == 0 or float(np.sqrt(np.mean(sound.astype(np.float64) ** 2))) < 1e-3:
        raise VerificationError(
            "no_speech_heard",
            f'the recording has no sound to hear the code in; say "{challenge.phrase}" aloud while you record',
        )
    transcript = transcriber(sound, rate)
    check_digits(transcript, challenge)

    envelope = speech_envelope(sound, rate, times)
    scored = []
    for track in captured.tracks:
        scaled = [(t, x * scale, y * scale, size * scale) for t, x, y, size in track]
        scored.append(lipsync_score(mouth_signal(frames, times, scaled), envelope, times))
    main, lag = scored[0] if scored else (0.0, 0.0)
    if main < LIPSYNC_THRESHOLD:
        speaker = max(range(len(scored)), key=lambda i: scored[i][0], default=0)
        if speaker != 0 and scored[speaker][0] >= LIPSYNC_THRESHOLD:
            raise VerificationError(
                "different_face",
                "the voice saying the code comes from another face in the recording, not the one the cameo keeps;"
                " record yourself alone, saying it",
            )
        raise VerificationError(
            "lips_mismatch",
            f"the mouth in the recording does not follow the voice saying the code (score {main:.2f}, needed"
            f" {LIPSYNC_THRESHOLD:g}); record yourself saying it, facing the camera, with the sound recorded live",
        )
    return {
        "status": "verified",
        "why": "verified",
        "challenge": _challenge_record(challenge),
        "transcript": transcript,
        "digits_heard": spoken_digits(transcript),
        "recognizer": recognizer,
        "scores": {
            "lipsync": round(main, 4),
            "lipsync_lag_seconds": round(lag, 3),
            "lipsync_threshold": LIPSYNC_THRESHOLD,
            "other_faces": [round(s, 4) for s, _ in scored[1:]],
        },
        "hashes": {
            "recording_sha256": file_sha256(Path(video)),
            "sound_sha256": hashlib.sha256(np.ascontiguousarray(sound).tobytes()).hexdigest(),
        },
        "checked_at": int(time.time()),
    }


# --------------------------------------------------------------------------- the digits

_UNITS = {w: str(i) for i, w in enumerate(DIGIT_WORDS)} | {
    "oh": "0",
    "o": "0",
    "nought": "0",
    "won": "1",
    "to": "2",
    "too": "2",
    "for": "4",
    "ate": "8",
}
_TEENS = {
    w: str(10 + i)
    for i, w in enumerate(
        ("ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen")
    )
}
_TENS = {
    w: str(i + 2) for i, w in enumerate(("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"))
}


def spoken_digits(transcript: str) -> str:
    """Every digit ``transcript`` says, in order: numerals ("4729", "4, 7"), digit words ("four seven"), their
    common mishearings ("for", "to", "oh") and two-digit words ("forty-seven", "twelve")."""
    out = []
    words = re.findall(r"[a-z]+|\d+", transcript.lower().replace("-", " "))
    i = 0
    while i < len(words):
        word = words[i]
        if word.isdigit():
            out.append(word)
        elif word in _TENS:
            unit = words[i + 1] if i + 1 < len(words) else ""
            if unit in DIGIT_WORDS[1:]:
                out.append(_TENS[word] + _UNITS[unit])
                i += 1
            else:
                out.append(_TENS[word] + "0")
        elif word in _TEENS:
            out.append(_TEENS[word])
        elif word in _UNITS:
            out.append(_UNITS[word])
        i += 1
    return "".join(out)


def check_digits(transcript: str, challenge: Challenge) -> None:
    """Raises ``VerificationError('wrong_code')`` unless the transcript says the challenge's digits, in order."""
    heard = spoken_digits(transcript)
    if challenge.digits not in heard:
        said = f"heard {transcript.strip()[:120]!r}" if transcript.strip() else "heard no words"
        raise VerificationError(
            "wrong_code",
            f"the recording does not say the challenge's code {' '.join(challenge.digits)} ({said}); record yourself"
            f' saying "{challenge.phrase}" clearly, facing the camera',
        )


# --------------------------------------------------------------------------- the voice comes from the face

LIPSYNC_THRESHOLD = 0.6  # measured on matched and mismatched pairs: tests/test_cameo_verify.py, README
MAX_LAG_SECONDS = 0.08  # encoders offset sound and picture by a frame or two; a voice 300 ms off is another voice
HIGH_PASS_SECONDS = 0.32
ANALYSIS_HEIGHT = 360
MAX_VERIFY_SECONDS = 30.0


def read_recording(path: Path) -> tuple[np.ndarray, np.ndarray, float, np.ndarray, int]:
    """Every frame (as gray, at most ``ANALYSIS_HEIGHT`` tall), their times, the scale applied, and the sound
    (mono, 16 kHz) of a recording."""
    frames, times = [], []
    scale = 1.0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            if frame.time is None:
                continue
            if frame.time > MAX_VERIFY_SECONDS:
                break
            gray = frame.to_ndarray(format="gray")
            scale = min(1.0, ANALYSIS_HEIGHT / gray.shape[0])
            if scale < 1.0:
                gray = cv2_resize(gray, scale)
            frames.append(gray)
            times.append(float(frame.time))
    try:
        sound, rate = decode_audio(path, RECOGNIZER_RATE, max_seconds=MAX_VERIFY_SECONDS)
    except AudioReadError:
        sound, rate = np.zeros(0, np.float32), RECOGNIZER_RATE
    return np.stack(frames), np.asarray(times), scale, sound, rate


def cv2_resize(image: np.ndarray, scale: float) -> np.ndarray:
    import cv2

    height, width = image.shape[:2]
    return cv2.resize(
        image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA
    )


def mouth_signal(frames: np.ndarray, times: np.ndarray, track: list[tuple[float, float, float, float]]) -> np.ndarray:
    """How the mouth region of the face ``track`` ((time, cx, cy, size) in ``frames``' pixels) changes over time:
    its crops' first principal component, one value a frame."""
    import cv2

    at = np.array([t[0] for t in track])
    cx, cy, size = (np.interp(times, at, [t[k] for t in track]) for k in (1, 2, 3))
    crops = []
    height, width = frames.shape[1:3]
    for frame, x, y, s in zip(frames, cx, cy, size, strict=True):
        x0, x1 = int(max(0, x - 0.28 * s)), int(min(width, x + 0.28 * s))
        y0, y1 = int(max(0, y + 0.12 * s)), int(min(height, y + 0.48 * s))
        crop = frame[y0:y1, x0:x1] if x1 > x0 + 1 and y1 > y0 + 1 else np.zeros((2, 2), np.uint8)
        small = cv2.resize(crop, (32, 20), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
        crops.append(small - small.mean())  # lighting that changes the whole crop is not the mouth moving
    matrix = np.stack(crops)
    matrix -= matrix.mean(0)
    if not np.any(matrix):
        return np.zeros(len(frames), np.float32)
    u, s, _ = np.linalg.svd(matrix, full_matrices=False)
    return (u[:, 0] * s[0]).astype(np.float32)


def speech_envelope(sound: np.ndarray, rate: int, times: np.ndarray) -> np.ndarray:
    """The loudness of ``sound`` around each of ``times`` (RMS over one frame's span, in dB above the floor)."""
    span = float(np.median(np.diff(times))) if len(times) > 1 else 0.04
    half = max(1, int(rate * span / 2))
    out = np.zeros(len(times), np.float32)
    for i, t in enumerate(times):
        centre = int(round(t * rate))
        chunk = sound[max(0, centre - half) : centre + half]
        out[i] = float(np.sqrt(np.mean(chunk.astype(np.float64) ** 2))) if chunk.size else 0.0
    return np.log10(out + 1e-4).astype(np.float32)


def _high_pass(signal: np.ndarray, span: float, seconds: float = HIGH_PASS_SECONDS) -> np.ndarray:
    width = max(3, int(round(seconds / span)) | 1)
    padded = np.pad(signal.astype(np.float64), width // 2, mode="edge")
    return (signal - np.convolve(padded, np.ones(width) / width, mode="valid")).astype(np.float32)


def lipsync_score(mouth: np.ndarray, envelope: np.ndarray, times: np.ndarray) -> tuple[float, float]:
    """(how closely the mouth follows the voice, the lag in seconds): the largest correlation (either sign: the
    principal component's sign is arbitrary) within ``MAX_LAG_SECONDS``."""
    span = float(np.median(np.diff(times))) if len(times) > 1 else 0.04
    most = int(round(MAX_LAG_SECONDS / span))
    # Syllables, not phrases: take out what changes slower than a third of a second, so that speaking at all
    # (against silence before and after) does not count as following this voice.
    mouth, envelope = _high_pass(mouth, span), _high_pass(envelope, span)
    best, best_lag = 0.0, 0.0
    for lag in range(-most, most + 1):
        a = mouth[max(0, lag) : len(mouth) + min(0, lag)]
        b = envelope[max(0, -lag) : len(envelope) + min(0, -lag)]
        if len(a) < 8 or a.std() == 0 or b.std() == 0:
            continue
        r = abs(float(np.corrcoef(a, b)[0, 1]))
        if r > best:
            best, best_lag = r, lag * span
    return best, best_lag


# --------------------------------------------------------------------------- the speech recogniser

MAX_TRANSCRIPT_TOKENS = 48  # "my kinema code is" and five digits, with room to spare
_recognizers: dict[tuple[str, float], Any] = {}


def _load(folder: Path) -> Any:
    """(model, feature extractor, tokenizer, prompt ids) of a Whisper-family folder: safetensors only, offline."""
    key = (str(folder), (folder / "config.json").stat().st_mtime)
    if key not in _recognizers:
        from transformers import AutoTokenizer, WhisperFeatureExtractor, WhisperForConditionalGeneration

        model = WhisperForConditionalGeneration.from_pretrained(folder, use_safetensors=True, local_files_only=True)
        model.eval()
        features = WhisperFeatureExtractor.from_pretrained(folder, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        config = model.generation_config
        prompt = [config.decoder_start_token_id]
        english = tokenizer.convert_tokens_to_ids("<|en|>")
        for _, token in sorted(getattr(config, "forced_decoder_ids", None) or []):
            prompt.append(english if token is None else token)  # a multilingual model: its language slot
        _recognizers.clear()
        _recognizers[key] = (model, features, tokenizer, prompt, config.eos_token_id)
    return _recognizers[key]


def transcribe(sound: np.ndarray, rate: int, folder: Path | None = None) -> str:
    """What the installed Whisper-family model hears in ``sound`` (mono), by greedy decoding, in English."""
    import torch

    folder = folder or recognizer_folder()
    if folder is None:
        raise InvalidRequestError(f"no speech-recognition model is installed: {ENABLE_HINT}")
    model, features, tokenizer, prompt, eos = _load(folder)
    if rate != features.sampling_rate:
        from kinema.media.speech import resample

        sound = resample(sound, rate, features.sampling_rate)
    inputs = features(sound[: 30 * features.sampling_rate], sampling_rate=features.sampling_rate, return_tensors="pt")
    ids = torch.tensor([prompt])
    with torch.inference_mode():
        encoded = model.model.encoder(inputs.input_features.to(model.dtype))
        for _ in range(MAX_TRANSCRIPT_TOKENS):
            logits = model(encoder_outputs=encoded, decoder_input_ids=ids).logits[0, -1]
            token = int(logits.argmax())
            if token == eos:
                break
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return str(tokenizer.decode(ids[0, len(prompt) :].tolist(), skip_special_tokens=True)).strip()
