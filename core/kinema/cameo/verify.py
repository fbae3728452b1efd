"""Proving the person at capture: the recording must show the face saying a one-time challenge.

Without a speech-recognition model installed, nothing can be checked: the cameo
is stored *unverified* (only its owner may use it) and the record says why.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kinema import models as model_store
from kinema.cameo.challenge import Challenge
from kinema.errors import InvalidRequestError

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
    chosen = os.environ.get(RECOGNIZER_ENV, "").strip()
    if chosen:
        path = Path(chosen).expanduser()
        if path.is_dir():
            return path
        if model_store.is_hub_id(chosen) and _pulled(chosen):
            return model_store.local_dir_for(chosen)
        raise InvalidRequestError(
            f"{RECOGNIZER_ENV}={chosen!r} is neither a folder nor a pulled model; `kinema models pull {chosen}`"
            f" or point it at a Whisper folder"
        )
    if _pulled(DEFAULT_RECOGNIZER):
        return model_store.local_dir_for(DEFAULT_RECOGNIZER)
    return None


def _pulled(hub_id: str) -> bool:
    """A transformers model (config.json, not a diffusers model_index.json) pulled into kinema's model folder."""
    return (model_store.local_dir_for(hub_id) / "config.json").is_file()


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


def verify(video: Path, captured: Any, challenge: Challenge | None) -> dict[str, Any]:
    """What the capture proves about the person, for the consent record; raises ``VerificationError`` when a
    check fails."""
    if challenge is None:
        return unverified("captured without a challenge")
    ready, line = status()
    if not ready:
        return unverified("no speech-recognition model was installed at capture: " + line[len("off: ") :], challenge)
    return unverified("verification is not implemented yet", challenge)
