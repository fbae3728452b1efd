"""Making a cameo from Blender: a one-time phrase from the server, then the recording of the person saying it.

The server proves the person (``POST /v1/cameos/challenge``, then ``POST /v1/cameos`` with the challenge's id): its
speech recogniser must hear the phrase's digits, said by the face the cameo keeps. Blender only shows the phrase
with the time left, uploads the recording, and says what the server decided. No bpy here: the worker threads post
plain dicts, and cameo_panel.py applies them on the main thread.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import threading
import time

from . import runner
from .runner import api

# What each refusal means to the person at the camera; the server's own sentence follows it in the panel.
REFUSALS = {
    "challenge_expired": "The phrase expired before the recording arrived",
    "challenge_used": "That phrase was already used for a capture",
    "challenge_unknown": "The server does not know that phrase",
    "challenge_not_yours": "That phrase was issued to another user",
    "cameo_wrong_code": "The recording does not say the phrase's code",
    "cameo_no_speech_heard": "No speech was heard in the recording",
    "cameo_lips_mismatch": "The mouth in the recording does not follow the voice",
    "cameo_different_face": "The voice comes from another face than the one kept",
    "cameo_widen_unverified": "Only a verified cameo may be shared",
}


@dataclasses.dataclass
class CaptureState:
    state: str = "idle"  # idle, asking, ready (phrase shown), uploading, verified, unverified, refused
    challenge: str = ""
    phrase: str = ""
    digits: str = ""
    deadline: float = 0.0  # time.monotonic() when the phrase expires (from the server's own lifetime for it)
    name: str = ""
    message: str = ""  # the outcome, or why there is none
    code: str = ""  # the server's refusal code
    cameo: dict = dataclasses.field(default_factory=dict)

    def seconds_left(self, now: float | None = None) -> float:
        if not self.challenge:
            return 0.0
        return max(0.0, self.deadline - (time.monotonic() if now is None else now))

    def phrase_live(self, now: float | None = None) -> bool:
        return self.state == "ready" and self.seconds_left(now) > 0

    def time_left_text(self, now: float | None = None) -> str:
        left = self.seconds_left(now)
        if left <= 0:
            return "Expired: get a new phrase"
        return f"{int(left) // 60}:{int(left) % 60:02d} left to record and make the cameo"

    @property
    def busy(self) -> bool:
        return self.state in ("asking", "uploading")


def outcome_text(cameo: dict) -> tuple[str, str]:
    """(level, sentence) for a cameo the server made: verified, or unverified and why."""
    name = cameo.get("name") or cameo.get("id") or "?"
    if cameo.get("verified"):
        return "INFO", f"Cameo '{name}' is verified: you said the phrase on camera; you may let others use it"
    why = str(cameo.get("verification") or "unverified")
    return "WARNING", f"Cameo '{name}' is unverified, so only you may use it: {why}"


def refusal_text(code: str, message: str) -> str:
    title = REFUSALS.get(code)
    return f"{title}: {message}" if title else message


def uses_up_the_phrase(code: str) -> bool:
    """The server redeems a challenge before it captures and checks: after these, a new phrase is needed."""
    return code.startswith(("challenge_", "cameo_"))


class CaptureWork:
    """Worker threads for the two requests; ``drain()`` hands their outcomes to the main thread."""

    def __init__(self) -> None:
        self._updates: queue.SimpleQueue[dict] = queue.SimpleQueue()

    def drain(self) -> list[dict]:
        out = []
        while True:
            try:
                out.append(self._updates.get_nowait())
            except queue.Empty:
                return out

    def ask(self, work: runner.Runner, settings: runner.ServerSettings) -> None:
        """A fresh phrase for this user, from the server the add-on's jobs use."""

        def run() -> None:
            try:
                client = work.connection.client(settings, work.post)
                sent = time.monotonic()
                issued = client.cameo_challenge()
                lifetime = float(issued.get("expires_at", 0)) - float(issued.get("issued_at", 0))
                self._updates.put(
                    {
                        "state": "ready",
                        "challenge": issued["id"],
                        "phrase": issued["phrase"],
                        "digits": issued.get("digits", ""),
                        # from when it was asked for: never later than the server's own expiry
                        "deadline": sent + max(0.0, lifetime),
                        "message": "",
                        "code": "",
                    }
                )
            except (api.ClientError, OSError) as error:
                self._failed(error, settings, keep_phrase=False)

        threading.Thread(target=run, name="kinema-cameo-challenge", daemon=True).start()

    def create(
        self,
        work: runner.Runner,
        settings: runner.ServerSettings,
        name: str,
        video: str,
        *,
        challenge: str,
        audio: str = "",
        permission: str = "only_me",
        allowed_users: tuple[str, ...] = (),
    ) -> None:
        """Upload the recording with the challenge's id; the server answers once it has found the face and checked
        the speech, which takes a while for a long recording."""

        def run() -> None:
            try:
                client = work.connection.client(settings, work.post)
                made = client.create_cameo(
                    name,
                    video,
                    challenge=challenge,
                    audio=audio or None,
                    permission=permission,
                    allowed_users=list(allowed_users),
                )
            except (api.ClientError, OSError) as error:
                self._failed(error, settings, keep_phrase=False)
                return
            try:
                usable = [row.get("character_id") or row["id"] for row in client.cameos() if row.get("usable")]
            except api.ClientError:
                usable = None
            level, sentence = outcome_text(made)
            self._updates.put(
                {
                    "state": "verified" if made.get("verified") else "unverified",
                    "challenge": "",
                    "cameo": made,
                    "message": sentence,
                    "level": level,
                    "code": "",
                    "usable_cameos": usable,
                }
            )

        threading.Thread(target=run, name="kinema-cameo-create", daemon=True).start()

    def _failed(self, error: BaseException, settings: runner.ServerSettings, *, keep_phrase: bool) -> None:
        code = getattr(error, "code", None) or ""
        if isinstance(error, api.APIError):
            message = refusal_text(code, str(error))
            keep_phrase = not uses_up_the_phrase(code)
        else:
            message = runner.describe(error, settings)
            keep_phrase = True  # nothing reached the server, so the phrase was not used
        update = {"state": "refused", "message": message, "code": code, "level": "ERROR", "keep_phrase": keep_phrase}
        self._updates.put(update)


def recording_problem(path: str) -> str | None:
    """Why ``path`` cannot be sent as the recording, or None."""
    if not path.strip():
        return "Choose the recording of you saying the phrase (a video file from your phone or webcam)"
    if not os.path.isfile(path):
        return f"No recording at {path}: choose the video file you recorded"
    return None
