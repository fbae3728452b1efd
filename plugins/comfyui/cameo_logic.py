"""The cameo node pair without ComfyUI: capture a consenting person from a video, and pick a cameo for Generate.

ComfyUI runs as the machine's user, so the nodes act as kinema's local user
(``KINEMA_USER`` or the login name): you own the cameos you capture, and
you can use only those whose owners allow you.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kinema.errors import InvalidRequestError

NO_CAMEO = "(pick a cameo)"


@dataclass(frozen=True)
class CameoHandle:
    """What flows from Kinema Cameo to Kinema Generate: a cameo name, whether its voice drives the clip, and a
    line it says in that voice (spoken by the voice model)."""

    name: str
    speak: bool = False
    dialogue: str | None = None

    def __repr__(self) -> str:
        saying = f" saying {self.dialogue!r}" if self.dialogue else " (speaking)" if self.speak else ""
        return f"<kinema cameo {self.name}{saying}>"


def cameo_choices() -> list[str]:
    """Cameos the local user may use now, for the picker."""
    from kinema.cameo.store import CameoStore, local_user

    return [NO_CAMEO, *(row["name"] for row in CameoStore().list(local_user()) if row.get("usable"))]


def capture_cameo(
    name: str,
    frames: np.ndarray,
    fps: Any,
    audio: tuple[np.ndarray, int] | None = None,
    permission: str = "only_me",
    allowed_users: str = "",
    replace: bool = False,
    video_audio: tuple[np.ndarray, int] | None = None,
    challenge: str = "",
) -> tuple[CameoHandle, torch.Tensor, str]:
    """Kinema Cameo Capture: (the cameo, its reference portraits as an IMAGE batch, a one-line report).

    ``audio`` is a voice recording given on purpose (no speech in it is an error); ``video_audio`` the
    video's own sound, used for the voice when it has enough speech. ``challenge``: the id whose phrase the
    video shows the person saying (``kinema cameo challenge``); it verifies the cameo.
    """
    from kinema.cameo.make import make_cameo
    from kinema.cameo.store import check_name, local_user
    from kinema.media.files import write_mp4
    from kinema.media.speech import write_wav

    check_name(name)
    users = tuple(u.strip() for u in (allowed_users or "").split(",") if u.strip())
    folder = Path(tempfile.mkdtemp(prefix="kinema-cameo-"))
    try:
        # The capture reads files, as it does for the CLI and the server: one code path for every host.
        sound = rate = None
        if video_audio is not None:
            from kinema.media.speech import resample

            # AAC takes only some sample rates; 48 kHz is one, and plenty for a voice.
            sound = resample(np.atleast_2d(np.asarray(video_audio[0], np.float32))[:2], int(video_audio[1]), 48000)
            rate = 48000
        video = write_mp4(folder / "recording.mp4", frames, Fraction(fps).limit_denominator(1001), sound, rate)
        voice = None
        if audio is not None:
            wave, rate = audio
            voice = write_wav(
                folder / "voice.wav", np.asarray(wave, np.float32).reshape(-1, wave.shape[-1]).mean(0), int(rate)
            )
        if permission == "listed" and not users:
            raise InvalidRequestError("permission 'listed' needs allowed_users, e.g. 'bob, carol'")
        made, captured = make_cameo(
            name,
            local_user(),
            video,
            voice,
            challenge=challenge.strip() or None,
            permission=permission,
            allowed_users=users,
            replace=replace,
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    references = torch.from_numpy(np.stack(captured.references)).to(torch.float32).div_(255.0)
    report = captured.report
    summary = (
        f"cameo {made.name}: {len(made.references)} references, face {report['face_px']} px,"
        f" voice {report.get('voice_seconds', 0):g} s, embedding {made.embedding_model or 'none'},"
        f" {'verified' if made.verified else 'unverified (only you may use it)'}"
    )
    return CameoHandle(made.name), references, "; ".join([summary, *captured.notes])


def consent_state(name: str) -> str:
    """Changes whenever the cameo's consent record does (and with the user): ComfyUI then re-runs the node."""
    from kinema.cameo.store import RECORD_FILE, CameoStore, local_user

    try:
        record = CameoStore().path(name) / RECORD_FILE
        stat = record.stat()
    except (InvalidRequestError, OSError):
        return f"{name}:missing"
    # Expiry passes without the file changing, so the hour is part of the fingerprint too.
    return f"{name}:{stat.st_mtime_ns}:{stat.st_size}:{local_user()}:{int(time.time() // 3600)}"


def use_cameo(name: str, speak: bool = False, dialogue: str = "") -> tuple[CameoHandle, torch.Tensor]:
    """Kinema Cameo: the picked cameo for Generate (consent is checked here and again when Generate runs).

    ``dialogue``: a line the cameo says in its voice; its voice's consent is checked here too."""
    from kinema.cameo.store import CameoStore, local_user
    from kinema.media.tts import check_line

    if name == NO_CAMEO:
        raise InvalidRequestError(
            "pick a cameo (capture one with Kinema Cameo Capture or `kinema cameo create`,"
            " then press R to refresh the list)"
        )
    cameo = CameoStore().authorize(name, local_user())
    line = check_line(dialogue) if dialogue.strip() else None
    if (speak or line) and cameo.voice is None:
        raise InvalidRequestError(
            f"cameo {name!r} has no voice sample; turn speak off, clear the dialogue, or capture it with audio"
        )
    if speak or line:
        cameo.require_voice(local_user())
    portrait = torch.from_numpy(cameo.reference_images()[0][None].copy()).to(torch.float32).div_(255.0)
    return CameoHandle(cameo.name, bool(speak), line), portrait


def request_fields(cameo: Any) -> dict[str, Any]:
    """What a cameo adds to Generate's request."""
    if cameo is None:
        return {}
    if not isinstance(cameo, CameoHandle):
        raise InvalidRequestError("cameo must come from a Kinema Cameo or Kinema Cameo Capture node")
    from kinema.cameo.store import local_user

    fields = {"cameos": (cameo.name,), "speech": cameo.name if cameo.speak or cameo.dialogue else None}
    return {**fields, "dialogue": cameo.dialogue, "user": local_user()}
