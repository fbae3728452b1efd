"""Making a cameo, the one path for the CLI, the server and the hosts: challenge, capture, verification, record."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kinema.cameo import challenge as challenges
from kinema.cameo import verify as verification
from kinema.cameo.capture import CaptureResult, capture
from kinema.cameo.store import Cameo, CameoError, CameoStore, _widen_unverified, check_identity, check_name
from kinema.media import tts


def make_cameo(
    name: str,
    owner: str,
    video: str | os.PathLike[str],
    audio: str | os.PathLike[str] | None = None,
    *,
    challenge: str | None = None,
    store: CameoStore | None = None,
    permission: str = "only_me",
    allowed_users: tuple[str, ...] = (),
    expires: Any = None,
    replace: bool = False,
    detector: Any = None,
    embedder: Any = "installed",
    transcriber: Callable[..., str] | None = None,
) -> tuple[Cameo, CaptureResult]:
    """Capture cameo ``name`` for ``owner`` from ``video``, checked against ``challenge`` (an id from
    ``kinema cameo challenge``) when given; the challenge is used up whatever the capture's outcome (a name
    the owner has already is refused before it is used).

    Raises ``ChallengeError`` (unknown, expired, used, not yours), ``CaptureError`` (not one clear person)
    or ``VerificationError`` (the recording does not say the challenge with the face shown).
    ``transcriber(sound, rate)`` replaces the installed speech recogniser (``kinema.cameo.verify.verify``).
    """
    check_name(name)
    check_identity(owner)
    store = store or CameoStore()
    if not replace and store.own(name, owner) is not None:  # before the slow part (and before the challenge is used)
        raise CameoError(f"you already have a cameo named {name!r}; pick another name, or delete it first")
    issued = challenges.redeem(challenge, owner) if challenge is not None else None
    can_verify = transcriber is not None or verification.status()[0]
    if (permission != "only_me" or allowed_users) and (issued is None or not can_verify):
        raise _widen_unverified(name)  # before the slow part: it could only end unverified
    captured = capture(video, audio, detector=detector, embedder=embedder)
    checked = verification.verify(Path(video), captured, issued, transcriber=transcriber)
    if captured.voice is not None and can_verify:
        # What the voice sample's first seconds say, signed with the record: a voice model continues the voice best
        # when it also reads what the sample says (kinema.cameo.voice_lines).
        start = captured.voice[: int(tts.MAX_PROMPT_SECONDS * captured.voice_rate)]
        captured.report["voice_transcript"] = (transcriber or verification.transcribe)(start, captured.voice_rate)
    made = store.create(
        name,
        owner,
        captured,
        permission=permission,
        allowed_users=allowed_users,
        expires=expires,
        replace=replace,
        verification=checked,
    )
    return made, captured
