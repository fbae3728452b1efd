"""One-time spoken challenges: the phrase a person reads out while recording their cameo.

``issue(user)`` makes a short phrase with random digits, valid for
``CHALLENGE_SECONDS``, bound to the user who asked; ``redeem(id, user)`` hands it
to exactly one capture by that user. A recording made for an old or someone
else's challenge therefore cannot be replayed as a new cameo: the digits it
says are not the ones asked for.

Challenges live in ``KINEMA_HOME/cameo-challenges/<id>.json`` (private files). A
redeemed one is kept, marked used, until it is a day old, so a second use is
refused as reused rather than unknown.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kinema.cameo.store import _locked, _private_dir, _write_private, check_identity
from kinema.errors import InvalidRequestError
from kinema.home import kinema_home

CHALLENGE_SECONDS = 300  # long enough to read the phrase, record and upload; short enough that it is fresh
DIGITS = 5
KEEP_SECONDS = 86400  # a used or expired challenge is remembered this long, then forgotten
ID_PATTERN = re.compile(r"^chl_[0-9a-f]{24}$")
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
REASONS = ("unknown", "expired", "used", "not_yours")


class ChallengeError(InvalidRequestError):
    """A challenge that cannot be used; ``reason`` is one of ``REASONS``."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Challenge:
    id: str
    user: str
    digits: str
    issued_at: float
    expires_at: float

    @property
    def phrase(self) -> str:
        """What the person says on camera."""
        return "my kinema code is " + " ".join(DIGIT_WORDS[int(d)] for d in self.digits)

    def public(self) -> dict[str, Any]:
        return {
            "object": "cameo.challenge",
            "id": self.id,
            "phrase": self.phrase,
            "digits": self.digits,
            "user": self.user,
            "issued_at": int(self.issued_at),
            "expires_at": int(self.expires_at),
            "expires_in": CHALLENGE_SECONDS,
            "instructions": (
                "Record yourself alone, facing the camera, saying this phrase aloud, and capture the cameo from that"
                f" recording with this challenge id within {CHALLENGE_SECONDS // 60} minutes; it works once."
            ),
        }


def _folder() -> Path:
    return _private_dir(kinema_home() / "cameo-challenges")


def issue(user: str, now: float | None = None) -> Challenge:
    """A fresh challenge for ``user``."""
    now = time.time() if now is None else now
    user = check_identity(user)
    folder = _folder()
    challenge = Challenge(
        id="chl_" + secrets.token_hex(12),
        user=user,
        digits="".join(str(secrets.randbelow(10)) for _ in range(DIGITS)),
        issued_at=now,
        expires_at=now + CHALLENGE_SECONDS,
    )
    with _locked(folder):
        _forget_old(folder, now)
        _write_private(folder / f"{challenge.id}.json", json.dumps({**asdict(challenge), "used_at": None}).encode())
    return challenge


def redeem(challenge_id: Any, user: str, now: float | None = None) -> Challenge:
    """The challenge ``challenge_id`` for one capture by ``user``; it cannot be redeemed again.

    Raises ``ChallengeError`` saying why: unknown, expired, already used, or issued to someone else.
    """
    now = time.time() if now is None else now
    again = "ask for a new one (`kinema cameo challenge`, or POST /v1/cameos/challenge) and record yourself saying it"
    if not isinstance(challenge_id, str) or not ID_PATTERN.match(challenge_id):
        raise ChallengeError("unknown", f"{str(challenge_id)[:64]!r} is not a challenge id (chl_...); {again}")
    folder = _folder()
    path = folder / f"{challenge_id}.json"
    with _locked(folder):
        try:
            stored = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            raise ChallengeError("unknown", f"no challenge {challenge_id!r} was issued here; {again}") from None
        used_at = stored.pop("used_at", None)
        challenge = Challenge(**stored)
        if challenge.user != user:
            raise ChallengeError(
                "not_yours", f"challenge {challenge_id!r} was issued to another user; only they can use it; {again}"
            )
        if used_at is not None:
            raise ChallengeError("used", f"challenge {challenge_id!r} was already used for a capture; {again}")
        if now >= challenge.expires_at:
            raise ChallengeError(
                "expired",
                f"challenge {challenge_id!r} expired {now - challenge.expires_at:.0f} s ago (each lasts"
                f" {CHALLENGE_SECONDS // 60} minutes); {again}",
            )
        _write_private(path, json.dumps({**asdict(challenge), "used_at": now}).encode())
    return challenge


def _forget_old(folder: Path, now: float) -> None:
    for entry in folder.glob("chl_*.json"):
        try:
            if now - entry.stat().st_mtime > KEEP_SECONDS:
                os.unlink(entry)
        except FileNotFoundError:
            pass
