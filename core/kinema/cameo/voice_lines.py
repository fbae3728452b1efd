"""A cameo's voice: consent to use it, and new lines spoken in it (kinema.media.tts) that then drive the clip.

The face and the voice are consented to separately: a cameo's owner may let others put their face in clips but
not make them speak. Its owner always may; others need the record's voice permission (``VOICE_PERMISSION``,
``kinema cameo allow NAME --voice``), for the recorded voice and for new lines alike. A cameo made before the
permission existed says no until its owner says yes: a voice is the more personal of the two, and a cameo shared
for its face was never asked about lines it never said.

A spoken line is recorded in the clip's metadata and C2PA manifest as synthetic, with whose voice it imitates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from kinema.errors import InvalidRequestError
from kinema.media import tts
from kinema.media.speech import load_speech

if TYPE_CHECKING:
    from kinema.cameo.store import Cameo
    from kinema.request import GenerationRequest


def voice_ref(request: GenerationRequest) -> str | None:
    """Which of the request's cameos speaks its dialogue: the one ``speech`` names, else its only cameo, else none
    (the voice model's own voice)."""
    if isinstance(request.speech, str) and request.speech in request.cameos:
        return request.speech
    return request.cameos[0] if len(request.cameos) == 1 else None


def speak_line(
    request: GenerationRequest, named: dict[str, Cameo], user: str, seconds: float | None
) -> tuple[tuple[np.ndarray, int], str, dict[str, Any]]:
    """The request's dialogue spoken in its speaker's voice, after checking consent for that voice: (the line's
    samples and rate, the speech source the clip records, the voice line's provenance record)."""
    assert request.dialogue is not None
    ref = voice_ref(request)
    cameo = named.get(ref) if ref is not None else None
    voice = None
    transcript = None
    if cameo is not None:
        cameo.require_voice(user)
        if cameo.voice_path is None:
            raise InvalidRequestError(
                f"cameo {cameo.name!r} has no voice sample to speak the dialogue in; its owner can re-create it"
                " with a recording of them talking (--audio)"
            )
        voice = load_speech(cameo.voice_path)
        # What the sample says, transcribed when it was captured with a speech recogniser installed
        # (kinema.cameo.make); a cameo without one is continued from the sound of its voice alone.
        transcript = str(cameo.capture.get("voice_transcript") or "").strip() or None
    line = tts.speak(request.dialogue, voice=voice, transcript=transcript, seconds=seconds, seed=_seed(request))
    record = {
        "synthetic": True,  # not a recording: a text-to-speech model said it
        "text": request.dialogue,
        "voice_of": None if cameo is None else cameo.name,
        "voice_consent": None if cameo is None else ("owner" if user == cameo.owner else "voice permission"),
        "model": line.model,
        "sample_rate": line.rate,
        "voice_prompt_seconds": round(line.prompt_seconds, 2),
        "voice_transcript": transcript is not None,  # the model read what the voice sample says
    }
    source = f"voice line: {'the model' if cameo is None else 'cameo:' + cameo.name}"
    return (line.audio, line.rate), source, record


def _seed(request: GenerationRequest) -> int:
    return int(request.seed or 0) % 2**32
