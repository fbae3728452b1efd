"""Cameos: a consenting person's captured likeness and voice, with who may use them.

A cameo lives in ``KINEMA_HOME/cameos/<name>/``: reference portraits, aligned
face crops, an optional voice sample, an append-only use log, and
``cameo.json`` — the consent record (owner, permission, allowed users, expiry,
revocation) plus a SHA-256 of every file, signed with HMAC-SHA256 under a
per-install key. A record edited by hand, or a swapped picture, fails the
check and the cameo is refused until its owner re-creates it.

Users are kinema identities: a user key's name on the server (``kinema keys
add``), ``KINEMA_USER`` for the CLI when set, and otherwise ``SERVER_OWNER``:
whoever owns this data directory (the CLI and hosts on this machine, and the
server's master key). Only the owner may change, list the uses of, or delete
a cameo. Every generation checks consent
when it starts and again before it hands the clip over, so a revoke stops
queued and running jobs too.

The use log is hash-chained under the same key: each line carries an HMAC of
its entry and of the line before it, and the consent record says the log is
chained, so an edited, inserted, reordered or removed line refuses the cameo
(and its uses) like an edited record; ``uses.head`` (signed) holds the count
and last link, so cutting lines off the end is caught too. A tampered cameo
stays deletable: by the owner its record names, or by ``SERVER_OWNER``.

The signatures make tampering evident; they cannot stop someone who can already
read this user's files (and so the key) from forging a record.
"""

from __future__ import annotations

import builtins
import contextlib
import getpass
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kinema.cameo import face as facelib
from kinema.errors import InvalidRequestError, KinemaError
from kinema.home import kinema_home
from kinema.hookspecs import hookimpl
from kinema.media.files import encode_png, read_image
from kinema.media.hashing import file_sha256
from kinema.media.speech import AudioReadError, load_speech, write_wav

if TYPE_CHECKING:
    from kinema.cameo.capture import CaptureResult
    from kinema.clip import Clip
    from kinema.request import GenerationRequest

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
# A cameo's id, global, is its folder's name; ``char_`` before it (OpenAI's character id) names it by id anywhere
# a name is taken (resolve), where a bare name means the asker's own cameo first.
ID_PREFIX = "char_"
REF_PATTERN = re.compile(r"^(?:char_)?[a-z0-9][a-z0-9_-]{0,39}$")
SUFFIXED_ID_STEM = 30  # a new id that needs a suffix: 30 characters of the name, '-', 4 hex digits (<= 40 in all)
USER_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}$")
PERMISSIONS = ("only_me", "listed", "everyone")
# What a cameo's owner allows besides the face, each a separate yes in the signed record; a record without the key
# (every cameo made before these existed) says no, and the owner says yes with `kinema cameo allow NAME --voice`.
VOICE_PERMISSION = "allow_voice"  # others may make it speak: its recorded voice, or new lines in that voice
REMOTE_PERMISSION = "allow_remote"  # its likeness may be sent to another server (a remote:NAME backend)
RECORD_FILE = "cameo.json"
USES_FILE = "uses.jsonl"
USES_HEAD_FILE = "uses.head"  # the signed count and last link of the use log: a log cut short is caught
# Set in every record since the use log was chained: without it an older cameo's plain log is signed once, in place.
USE_LOG_CHAINED = "use_log_chained"
VOICE_FILE = "voice.wav"
KEY_FILE = "cameo-signing.key"
# Format 2 records their owner as SERVER_OWNER; format 1 wrote the login name there (see _upgrade).
FORMAT = 2
# Who acts without a user key. User names start with a letter or digit, so no `kinema keys add` name, and
# so no user key, can ever be this identity (a key named after the login user is just another user).
SERVER_OWNER = "@owner"
MAX_CAMEOS_PER_REQUEST = 4


class CameoError(KinemaError):
    """Base for cameo problems a user can act on."""


class CameoNotFoundError(CameoError):
    """No cameo by that name here."""


class CameoAmbiguousError(CameoError):
    """A name that several cameos the asker may use answer to (none of them the asker's own)."""


class CameoNotAllowedError(CameoError):
    """The cameo exists but this user may not use (or manage) it right now."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason  # "not_owner", "not_allowed", "revoked", "expired", "unverified", "widen_unverified"


class CameoTamperedError(CameoError):
    """The consent record or a file of the cameo changed outside kinema."""


def local_user() -> str:
    """Who the CLI and Python API act as: ``KINEMA_USER`` (a named user) if set, else ``SERVER_OWNER``."""
    name = os.environ.get("KINEMA_USER")
    return check_user(name) if name else SERVER_OWNER


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "local"


def check_user(user: Any) -> str:
    """A name a user key may have (``kinema keys add``); never ``SERVER_OWNER``."""
    if not isinstance(user, str) or not USER_PATTERN.match(user):
        raise InvalidRequestError(
            f"user {user!r} is not a valid kinema user name: start with a letter or digit,"
            " then letters, digits, . _ @ + -"
        )
    return user


def check_identity(user: Any) -> str:
    """Someone who can own or use a cameo: a user name, or ``SERVER_OWNER``."""
    return user if user == SERVER_OWNER else check_user(user)


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise InvalidRequestError(
            f"cameo name {name!r} is not valid: use 1-40 lowercase letters, digits, '-' or '_', e.g. 'alice'"
        )
    return name


def check_ref(ref: Any) -> str:
    """A name of a cameo, or its id written ``char_ID`` (see ``CameoStore.resolve``)."""
    if not isinstance(ref, str) or not REF_PATTERN.match(ref):
        raise InvalidRequestError(
            f"cameo {ref!r} is neither a cameo name (1-40 lowercase letters, digits, '-' or '_', e.g. 'alice')"
            " nor a cameo id (char_ and its id, e.g. char_alice)"
        )
    return ref


def character_id(cameo: Cameo) -> str:
    """The id that names ``cameo`` for everyone: ``char_`` and its folder (OpenAI's character id)."""
    return ID_PREFIX + cameo.id


def parse_expiry(value: Any, now: float | None = None) -> float | None:
    """None, a Unix time, an ISO date/time, or a duration like '30d', '12h', '90m' from now."""
    if value is None or value == "":
        return None
    now = time.time() if now is None else now
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([dhm])", text)
    if match:
        unit = {"d": 86400, "h": 3600, "m": 60}[match.group(2)]
        return now + float(match.group(1)) * unit
    from datetime import datetime

    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequestError(
            f"expiry {text!r} is not a date (2026-01-31), a time or a duration (30d, 12h)"
        ) from None
    return moment.timestamp()


# --------------------------------------------------------------------------- the record


@dataclass(frozen=True)
class Cameo:
    """A verified cameo record and where its files are."""

    name: str
    owner: str
    permission: str
    allowed_users: tuple[str, ...]
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    references: tuple[str, ...]
    faces: tuple[str, ...]
    voice: str | None
    embedding: tuple[float, ...] | None
    embedding_model: str | None
    capture: dict = field(default_factory=dict, compare=False)
    voice_allowed: bool = False  # VOICE_PERMISSION: others may use its voice (its owner always may)
    remote_allowed: bool = False  # REMOTE_PERMISSION: it may be sent to a remote engine, by anyone (owner too)
    directory: Path = field(default=Path("."), compare=False)
    # How the person was verified at capture (kinema.cameo.verify); a record from before verification has none.
    verification: dict = field(default_factory=dict, compare=False)
    # Its global id (its folder's name). The name is unique per owner only; a record from before ids has its name.
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", self.name)

    @property
    def verified(self) -> bool:
        """Whether the capture proved the person: they said a one-time challenge on camera and it checked out."""
        return self.verification.get("status") == "verified"

    @property
    def on_hold(self) -> bool:
        """Widened to others before it was verified: the permission is kept, but only the owner may use it."""
        return not self.verified and (self.permission != "only_me" or bool(self.allowed_users))

    def may_use(self, user: str, now: float | None = None) -> tuple[bool, str, str]:
        """(allowed, reason code, sentence) for ``user`` at ``now``."""
        now = time.time() if now is None else now
        if self.revoked_at is not None:
            return False, "revoked", f"cameo {self.name!r} was revoked by its owner"
        if self.expires_at is not None and now >= self.expires_at:
            return False, "expired", f"consent for cameo {self.name!r} expired on {_when(self.expires_at)}"
        if user == self.owner:
            return True, "allowed", ""
        if self.permission == "everyone" or (self.permission == "listed" and user in self.allowed_users):
            if not self.verified:
                return (
                    False,
                    "unverified",
                    f"cameo {self.name!r} is unverified (nothing proved that the person in it made it): only its"
                    f" owner ({self.owner}) may use it until they verify it",
                )
            return True, "allowed", ""
        return (
            False,
            "not_allowed",
            f"{user!r} may not use cameo {self.name!r}: ask its owner ({self.owner}) to allow you",
        )

    def may_use_voice(self, user: str, now: float | None = None) -> tuple[bool, str, str]:
        """(allowed, reason code, sentence): may ``user`` make this cameo speak (its voice, or lines in it)?"""
        allowed, reason, message = self.may_use(user, now)
        if not allowed or user == self.owner or self.voice_allowed:
            return allowed, reason, message
        return (
            False,
            "voice_not_allowed",
            f"cameo {self.name!r}'s owner ({self.owner}) allows its face but not its voice: it cannot speak for"
            f" {user!r}; its owner can allow it with `kinema cameo allow {self.name} --voice`",
        )

    def require_voice(self, user: str) -> None:
        """Raises ``CameoNotAllowedError`` (``voice_not_allowed``, or the face's own reason) unless ``user`` may
        make this cameo speak: its recorded voice or new lines in it (kinema.cameo.voice_lines)."""
        allowed, reason, message = self.may_use_voice(user)
        if not allowed:
            raise CameoNotAllowedError(message, reason)

    def may_send_remote(self, user: str, now: float | None = None) -> tuple[bool, str, str]:
        """(allowed, reason code, sentence): may ``user`` send this cameo to another server (a remote engine)?"""
        allowed, reason, message = self.may_use(user, now)
        if not allowed:
            return allowed, reason, message
        if not self.verified:
            return (
                False,
                "unverified",
                f"cameo {self.name!r} is unverified: it is never sent to another server; {VERIFY_HINT}",
            )
        if self.remote_allowed:
            return True, "allowed", ""
        return (
            False,
            "remote_not_allowed",
            f"cameo {self.name!r} may not be sent to another server: its owner ({self.owner}) has not allowed"
            f" remote use (`kinema cameo allow {self.name} --remote`); use a local backend",
        )

    def reference_images(self) -> list[np.ndarray]:
        """The reference portraits, best first, as uint8 RGB arrays."""
        return [read_image(self.directory / name) for name in self.references]

    def face_images(self) -> list[np.ndarray]:
        return [read_image(self.directory / name) for name in self.faces]

    @property
    def voice_path(self) -> Path | None:
        return self.directory / self.voice if self.voice else None

    def public(self) -> dict[str, Any]:
        """What hosts and the API show: no file paths, no embedding numbers."""
        return {
            "name": self.name,
            "character_id": character_id(self),
            "owner": self.owner,
            "permission": self.permission,
            "allowed_users": list(self.allowed_users),
            "created_at": int(self.created_at),
            "expires_at": None if self.expires_at is None else int(self.expires_at),
            "revoked": self.revoked_at is not None,
            "references": len(self.references),
            "has_voice": self.voice is not None,
            "voice_allowed": self.voice_allowed,
            "remote_allowed": self.remote_allowed,
            "voice_seconds": self.capture.get("voice_seconds"),
            "has_embedding": self.embedding is not None,
            "embedding_model": self.embedding_model,
            "verified": self.verified,
            "verification": self.verification.get("why") or ("verified" if self.verified else VERIFY_HINT),
            "on_hold": self.on_hold,
        }


# What an unverified cameo's owner is told: the only way to verify is a new recording made for a challenge.
VERIFY_HINT = (
    "unverified: only its owner may use it; to verify it, run `kinema cameo challenge` (or POST"
    " /v1/cameos/challenge), record yourself saying the phrase, and capture it again with that challenge"
    " (`kinema cameo create NAME --replace --video NEW.mp4 --challenge ID`)"
)
UNVERIFIED_BEFORE = "captured before kinema verified the person in a cameo"


def _when(moment: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(moment))


def _canonical(record: dict) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


# --------------------------------------------------------------------------- file helpers


def _write_private(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data``, readable by this OS user only."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):  # file systems without modes (FAT, some mounts)
        os.chmod(path, 0o700)
    return path


_thread_lock = threading.RLock()


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """One writer at a time across threads and processes (CLI next to a running server)."""
    with _thread_lock, open(root / ".lock", "a+b") as handle:
        if sys.platform == "win32":  # no fcntl: msvcrt locks a byte range instead
            import msvcrt

            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK, 1)
            try:
                yield
            finally:
                handle.seek(0)
                msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
            return
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


# --------------------------------------------------------------------------- the store


class CameoStore:
    """Cameo records under one data directory (``KINEMA_HOME/cameos`` by default)."""

    def __init__(self, root: Path | None = None):
        if root is None:
            root = kinema_home() / "cameos"
        self.root = _private_dir(Path(root))

    # -- signing

    def _key(self) -> bytes:
        path = self.root.parent / KEY_FILE
        try:
            key = path.read_bytes()
        except FileNotFoundError:
            key = secrets.token_bytes(32)
            fd, tmp = tempfile.mkstemp(prefix=f".{KEY_FILE}.", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(key)
                    out.flush()
                    os.fsync(out.fileno())
                os.chmod(tmp, 0o600)
                try:
                    os.link(tmp, path)  # fails if another process won the race: use its key
                except FileExistsError:
                    key = path.read_bytes()
            finally:
                os.unlink(tmp)
        if len(key) < 32:
            raise CameoTamperedError(f"{path} is damaged; every cameo is refused until it is restored from a backup")
        return key

    def _sign(self, record: dict) -> str:
        return hmac.new(self._key(), _canonical(record), hashlib.sha256).hexdigest()

    def _write_record(self, directory: Path, record: dict) -> None:
        body = {"record": record, "signature": self._sign(record)}
        _write_private(directory / RECORD_FILE, json.dumps(body, indent=2, sort_keys=True).encode())

    # -- reading

    def path(self, name: str) -> Path:
        return self.root / check_name(name)

    def exists(self, name: str) -> bool:
        return (self.path(name) / RECORD_FILE).is_file()

    def get(self, name: str, *, verify_files: bool = True) -> Cameo:
        """The cameo, after checking its signature (and its files' hashes)."""
        directory = self.path(name)
        try:
            body = json.loads((directory / RECORD_FILE).read_text())
        except FileNotFoundError:
            raise CameoNotFoundError(f"no cameo named {name!r}; see `kinema cameo list`") from None
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
            raise CameoTamperedError(f"cameo {name!r} has an unreadable record ({error}); it cannot be used") from None
        record = body.get("record") if isinstance(body, dict) else None
        signature = body.get("signature") if isinstance(body, dict) else None
        if (
            not isinstance(record, dict)
            or not isinstance(signature, str)
            or not hmac.compare_digest(signature, self._sign(record))
        ):
            raise CameoTamperedError(
                f"cameo {name!r} was changed outside kinema (its consent record's signature does not match);"
                f" it cannot be used: its owner can delete it (`kinema cameo delete {name}`) and capture it again"
            )
        if record.get("id", record.get("name")) != name:
            raise CameoTamperedError(
                f"cameo folder {name!r} holds the record of {record.get('id', record.get('name'))!r}; it cannot be used"
            )
        if verify_files:
            for file_name, digest in record.get("files", {}).items():
                path = directory / file_name
                if not path.is_file() or not hmac.compare_digest(file_sha256(path), digest):
                    raise CameoTamperedError(
                        f"cameo {name!r}: {file_name} is missing or changed since capture; it cannot be used:"
                        f" its owner can delete it (`kinema cameo delete {name}`) and capture it again"
                    )
            if record.get(USE_LOG_CHAINED):
                self._read_uses(name)  # raises if the log was edited
        return _from_record(record, directory)

    def names(self) -> list[str]:
        """Every cameo's id (its folder's name)."""
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and NAME_PATTERN.match(p.name) and (p / RECORD_FILE).is_file()
        )

    def list(self, user: str | None = None) -> list[dict[str, Any]]:
        """Every cameo ``user`` owns or may use now (all when ``user`` is None), as public dicts.

        A damaged record is listed with its problem rather than hidden, so its
        owner can find and delete it.
        """
        rows: list[dict[str, Any]] = []
        for name in self.names():
            try:
                cameo = self.get(name, verify_files=False)
            except CameoError as error:
                rows.append({"name": name, "error": str(error)})
                continue
            usable, reason, _ = cameo.may_use(user or cameo.owner)
            if user is not None and cameo.owner != user and not usable:
                continue  # others see a cameo only while they may use it
            rows.append({"id": cameo.id, **cameo.public(), "usable": usable, "status": reason})
        return rows

    # -- names and ids

    def _records(self) -> Iterator[Cameo]:
        """Every cameo whose record is sound (a damaged one answers to no name; its id still finds it)."""
        for key in self.names():
            with contextlib.suppress(CameoError):
                yield self.get(key, verify_files=False)

    def own(self, name: str, owner: str) -> Cameo | None:
        """``owner``'s cameo called ``name``, if they have one (names are unique per owner)."""
        return next((c for c in self._records() if c.name == name and c.owner == owner), None)

    def resolve(self, ref: str, user: str) -> Cameo:
        """The cameo ``ref`` means when ``user`` says it (not yet checked: ``authorize`` asks whether they may use it).

        ``char_ID`` is the cameo with that id. A name is, in order: the user's own cameo of that name; else the
        one cameo of that name others let the user use now (several: ``CameoAmbiguousError``, which lists their
        ids); else one of that name shared with the user or with everyone that they may not use now (revoked,
        expired, unverified: ``authorize`` says why); else another's (``authorize`` says to ask its owner; the
        server answers as if it did not exist where its owner keeps it to themselves); else the cameo whose id it
        is, which is how cameos made before ids, and hosts that pass an id bare, keep working.
        """
        check_ref(ref)
        if ref.startswith(ID_PREFIX) and NAME_PATTERN.match(ref[len(ID_PREFIX) :]):
            with contextlib.suppress(CameoNotFoundError):
                return self.get(ref[len(ID_PREFIX) :], verify_files=False)
        named = [c for c in self._records() if c.name == ref]
        mine = [c for c in named if c.owner == user]
        if mine:
            return mine[0]
        others = [c for c in named if c.permission != "only_me"]
        usable = [c for c in others if c.may_use(user)[0]]
        if len(usable) > 1:
            choices = ", ".join(f"{character_id(c)} (owned by {c.owner})" for c in usable)
            raise CameoAmbiguousError(
                f"several cameos called {ref!r} are shared with you: {choices}; name the one you mean by its id"
            )
        shared = [c for c in others if c.permission == "everyone" or user in c.allowed_users]
        for group in (usable, shared, others, named):
            if group:
                return min(group, key=lambda c: c.created_at)
        if NAME_PATTERN.match(ref):
            return self.get(ref, verify_files=False)  # by id; raises CameoNotFoundError when there is none
        raise CameoNotFoundError(f"no cameo named {ref!r}; see `kinema cameo list`")

    def _owned_id(self, ref: str, user: str) -> str:
        """The id of the cameo an owner's command names: their own of that name, else ``ref`` as an id."""
        if ref.startswith(ID_PREFIX) and NAME_PATTERN.match(ref[len(ID_PREFIX) :]):
            return ref[len(ID_PREFIX) :]
        if NAME_PATTERN.match(ref):
            mine = self.own(ref, user)
            if mine is not None:
                return mine.id
        return check_name(ref)

    def _new_id(self, name: str) -> str:
        """A folder for a new cameo: its name when free (so most ids read as names), else the name and a suffix."""
        key = name
        while (self.root / key).exists():
            key = f"{name[:SUFFIXED_ID_STEM].rstrip('-_') or name[0]}-{secrets.token_hex(2)}"
        return key

    # -- writing

    def create(
        self,
        name: str,
        owner: str,
        captured: CaptureResult,
        *,
        permission: str = "only_me",
        allowed_users: tuple[str, ...] = (),
        expires: Any = None,
        replace: bool = False,
        verification: dict[str, Any] | None = None,
    ) -> Cameo:
        """Store ``captured`` as cameo ``name`` owned by ``owner``: all files appear at once or not at all.

        Names are unique per owner: another owner's cameo of the same name is left alone, and the new one gets
        an id of its own (``resolve`` says which one a name means). ``replace`` replaces the owner's own.

        ``verification`` is what ``kinema.cameo.verify`` found (signed into the record); without one, or
        unless it says verified, the cameo is its owner's alone and may not be widened to others.
        """
        check_name(name)
        if name.startswith(ID_PREFIX):
            raise InvalidRequestError(
                f"cameo name {name!r} starts with {ID_PREFIX!r}, which marks a cameo's id; pick a name without it"
            )
        check_identity(owner)
        permission = _check_permission(permission)
        allowed = tuple(sorted({check_identity(u) for u in allowed_users}))
        verification = dict(verification or {"status": "unverified", "why": "captured without a challenge"})
        if verification.get("status") != "verified" and (permission != "only_me" or allowed):
            raise _widen_unverified(name)
        expires_at = parse_expiry(expires)
        if not captured.references:
            raise InvalidRequestError("the capture has no reference pictures")
        with _locked(self.root):
            mine = self.own(name, owner)
            if mine is not None and not replace:
                raise CameoError(f"you already have a cameo named {name!r}; pick another name, or delete it first")
            key = mine.id if mine is not None else self._new_id(name)
            final = self.root / key
            staging = Path(tempfile.mkdtemp(prefix=f".{key}.", suffix=".new", dir=self.root))
            try:
                os.chmod(staging, 0o700)
                files: dict[str, str] = {}
                references, faces = [], []
                for i, image in enumerate(captured.references):
                    references.append(f"reference-{i}.png")
                    _write_private(staging / references[-1], encode_png(image))
                for i, image in enumerate(captured.faces):
                    faces.append(f"face-{i}.png")
                    _write_private(staging / faces[-1], encode_png(image))
                voice = None
                if captured.voice is not None:
                    voice = VOICE_FILE
                    write_wav(staging / voice, captured.voice, captured.voice_rate)
                    os.chmod(staging / voice, 0o600)
                for file_name in [*references, *faces, *([voice] if voice else [])]:
                    files[file_name] = file_sha256(staging / file_name)
                record = {
                    "format": FORMAT,
                    "id": key,
                    "name": name,
                    "owner": owner,
                    "permission": permission,
                    "allowed_users": list(allowed),
                    "created_at": time.time(),
                    "expires_at": expires_at,
                    "revoked_at": None,
                    "references": references,
                    "faces": faces,
                    "voice": voice,
                    "embedding": None
                    if captured.embedding is None
                    else [round(float(v), 7) for v in captured.embedding],
                    "embedding_model": captured.embedding_model,
                    "capture": {**captured.report, "notes": list(captured.notes)},
                    "verification": verification,
                    "files": files,
                    USE_LOG_CHAINED: True,
                }
                self._write_record(staging, record)
                self._write_head(staging, key, 0, "")
                if final.exists():
                    old = final.with_name(f".{key}.{secrets.token_hex(4)}.old")
                    os.replace(final, old)
                    os.replace(staging, final)
                    shutil.rmtree(old, ignore_errors=True)
                else:
                    os.replace(staging, final)
            finally:
                if staging.exists():
                    shutil.rmtree(staging, ignore_errors=True)
        return self.get(key)

    def _require_owner(self, name: str, user: str, *, action: str) -> Cameo:
        cameo = self.get(name, verify_files=False)
        if cameo.owner != user:
            raise CameoNotAllowedError(f"only {cameo.owner!r} (the owner) may {action} cameo {name!r}", "not_owner")
        return cameo

    def _update(self, name: str, user: str, action: str, change: dict[str, Any]) -> Cameo:
        with _locked(self.root):
            self._require_owner(name, user, action=action)
            directory = self.path(name)
            record = _upgrade(json.loads((directory / RECORD_FILE).read_text())["record"])
            record.update(change)
            self._write_record(directory, record)
        return self.get(name, verify_files=False)

    def allow(
        self,
        name: str,
        user: str,
        *,
        permission: str | None = None,
        add_users: tuple[str, ...] = (),
        remove_users: tuple[str, ...] = (),
        expires: Any = ...,
        voice: bool | None = None,
        remote: bool | None = None,
    ) -> Cameo:
        """Change who may use the cameo (owner only). Allowing again lifts a revocation.

        ``add_users`` implies the 'listed' permission unless ``permission`` says otherwise;
        ``expires=None`` removes an expiry, leaving it out keeps the current one. ``voice`` and ``remote`` set
        whether others may use its voice and whether it may go to a remote engine (None keeps each as it is).
        """
        name = self._owned_id(name, user)
        current = self._require_owner(name, user, action="change")
        if not current.verified and (add_users or permission in ("listed", "everyone")):
            raise _widen_unverified(name)
        users = set(current.allowed_users) | {check_identity(u) for u in add_users}
        users -= set(remove_users)
        if permission is None:
            permission = "listed" if add_users and current.permission == "only_me" else current.permission
        change: dict[str, Any] = {
            "permission": _check_permission(permission),
            "allowed_users": sorted(users),
            "revoked_at": None,
        }
        if expires is not ...:
            change["expires_at"] = parse_expiry(expires)
        for key, value in ((VOICE_PERMISSION, voice), (REMOTE_PERMISSION, remote)):
            if value is not None:
                change[key] = bool(value)
        return self._update(name, user, "change", change)

    def revoke(self, name: str, user: str, *, users: tuple[str, ...] = ()) -> Cameo:
        """Withdraw consent (owner only): from ``users`` if given, else from everyone, the owner included.

        Takes effect at once: queued and running generations re-check before
        they start and before they deliver their clip.
        """
        name = self._owned_id(name, user)
        current = self._require_owner(name, user, action="revoke")
        if users:
            remaining = sorted(set(current.allowed_users) - set(users))
            return self._update(name, user, "revoke", {"allowed_users": remaining})
        return self._update(name, user, "revoke", {"revoked_at": time.time()})

    def delete(self, name: str, user: str) -> None:
        """Remove the cameo and every file of it (owner only; a tampered one, see ``_may_delete_tampered``)."""
        with _locked(self.root):
            name = self._owned_id(name, user)
            directory = self.path(name)
            try:
                self._require_owner(name, user, action="delete")
            except CameoTamperedError:
                if not self._may_delete_tampered(directory, user):
                    raise
            trash = directory.with_name(f".{name}.{secrets.token_hex(4)}.deleted")
            os.replace(directory, trash)  # gone from every reader at once, then removed
            shutil.rmtree(trash, ignore_errors=True)

    @staticmethod
    def _may_delete_tampered(directory: Path, user: str) -> bool:
        """Whether ``user`` may delete a cameo whose record no longer proves its owner.

        Deleting only takes away, so trust is not needed to allow it: this data
        directory's owner (the CLI, the master key) always may, and so may the
        owner the unverifiable record still names. Whoever could edit the record
        could already delete the folder.
        """
        if user == SERVER_OWNER:
            return True
        with contextlib.suppress(OSError, ValueError, TypeError, AttributeError, KeyError):
            record = json.loads((directory / RECORD_FILE).read_text())["record"]
            return _upgrade(record).get("owner") == user
        return False

    # -- consent checks and the use log

    def authorize(self, name: str, user: str, now: float | None = None) -> Cameo:
        """The cameo ``name`` means for ``user`` (a name or ``char_ID``, see ``resolve``) if they may use it now;
        else ``CameoNotAllowedError`` saying why."""
        cameo = self.get(self.resolve(name, check_identity(user)).id)
        allowed, reason, message = cameo.may_use(check_identity(user), now)
        if not allowed:
            raise CameoNotAllowedError(message, reason)
        return cameo

    def log_use(self, name: str, entry: dict[str, Any]) -> None:
        """Append one entry to the cameo's use log, chained to the one before (one writer at a time).

        A log edited outside kinema refuses the append (``CameoTamperedError``), as it refuses the cameo.
        """
        line_entry = json.loads(json.dumps(entry, default=str))  # what the line will hold, as read back
        with _locked(self.root):
            directory = self.path(name)
            try:
                record = json.loads((directory / RECORD_FILE).read_text())["record"]
            except FileNotFoundError:
                return  # deleted meanwhile: nothing left to log into
            if not record.get(USE_LOG_CHAINED):
                record = self._chain_old_log(name, record)
            links, torn = self._verified_links(name)
            path = directory / USES_FILE
            if torn:  # a line cut short by a crash: drop it, so the new line starts a line of its own
                with open(path, "r+b") as handle:
                    handle.truncate(torn)
            mac = self._link(name, len(links), links[-1] if links else "", line_entry)
            line = (json.dumps({"entry": line_entry, "mac": mac}, sort_keys=True) + "\n").encode()
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
            self._write_head(directory, name, len(links) + 1, mac)

    def uses(self, name: str, user: str) -> builtins.list[dict[str, Any]]:
        """Every generation that used the cameo, oldest first, with the files it was saved to (owner only).

        Raises ``CameoTamperedError`` when the log was edited outside kinema.
        """
        name = self._owned_id(name, user)
        cameo = self._require_owner(name, user, action="see the uses of")
        with _locked(self.root):
            record = json.loads((cameo.directory / RECORD_FILE).read_text())["record"]
            if not record.get(USE_LOG_CHAINED):
                self._chain_old_log(name, record)
        entries: dict[str, dict[str, Any]] = {}
        for item in self._read_uses(name):
            if "takedown" in item:  # a clip made with these uses was taken down (take_down)
                for taken in item.get("uses") or ():
                    if taken in entries:
                        entries[taken].setdefault("taken_down", []).append(
                            {k: item.get(k) for k in ("takedown", "at", "reason")}
                        )
                continue
            use_id = item.get("use")
            if not use_id:
                continue
            if "saved_to" in item:
                if use_id in entries:
                    entries[use_id].setdefault("saved_to", []).append(item["saved_to"])
            else:
                entries[use_id] = {**item, "saved_to": []}
        return sorted(entries.values(), key=lambda e: e.get("at", 0))

    def log_takedown(
        self, name: str, user: str, *, clip: str, uses: builtins.list[str], maker: Any, reason: str
    ) -> None:
        """Write to the cameo's use log that its owner took down ``clip`` (made with ``uses``), and why."""
        name = self._owned_id(name, user)
        self._require_owner(name, user, action="take down clips of")
        entry = {"takedown": clip, "uses": uses, "maker": maker, "by": user, "reason": reason, "at": int(time.time())}
        self.log_use(name, entry)

    # -- the chained use log

    def _link(self, name: str, index: int, previous: str, entry: dict[str, Any]) -> str:
        """Line ``index``'s HMAC: its entry, its place, the line before it and the cameo it belongs to."""
        body = {"kind": "cameo-use", "cameo": name, "index": index, "previous": previous, "entry": entry}
        return self._sign(body)

    def _write_head(self, directory: Path, name: str, count: int, last: str) -> None:
        head = {"kind": "cameo-use-head", "cameo": name, "count": count, "last": last}
        _write_private(directory / USES_HEAD_FILE, json.dumps({**head, "signature": self._sign(head)}).encode())

    def _tampered_log(self, name: str, what: str) -> CameoTamperedError:
        return CameoTamperedError(
            f"cameo {name!r}: its use log ({USES_FILE}) was changed outside kinema ({what}); the cameo cannot be"
            f" used and its uses cannot be shown: its owner can delete it (`kinema cameo delete {name}`)"
            " and capture it again"
        )

    def _verified_links(self, name: str) -> tuple[builtins.list[str], int]:
        """Every line's HMAC, checked, and the byte offset of a torn last line (0 if none)."""
        _, links, torn = self._check_log(name)
        return links, torn

    def _read_uses(self, name: str) -> builtins.list[dict[str, Any]]:
        return self._check_log(name)[0]

    def _check_log(self, name: str) -> tuple[builtins.list[dict[str, Any]], builtins.list[str], int]:
        """The use log's entries and links after checking the chain and the head, and where a torn tail starts."""
        directory = self.path(name)
        try:
            data = (directory / USES_FILE).read_bytes()
        except FileNotFoundError:
            data = b""
        # Each line is written whole with its newline; only a crash mid-write leaves a last line without one.
        complete = data.rfind(b"\n") + 1
        torn = complete if complete < len(data) else 0
        entries: builtins.list[dict[str, Any]] = []
        links: builtins.list[str] = []
        for number, raw in enumerate(data[:complete].splitlines(), start=1):
            try:
                line = json.loads(raw)
                entry, mac = line["entry"], line["mac"]
                valid = isinstance(entry, dict) and isinstance(mac, str)
            except (ValueError, TypeError, KeyError):
                valid = False
            if not valid or not hmac.compare_digest(
                mac, self._link(name, len(links), links[-1] if links else "", entry)
            ):
                raise self._tampered_log(name, f"line {number} does not match its signature")
            entries.append(entry)
            links.append(mac)
        try:
            head = json.loads((directory / USES_HEAD_FILE).read_text())
            body = {k: head[k] for k in ("kind", "cameo", "count", "last")}
            valid = isinstance(head["signature"], str) and hmac.compare_digest(head["signature"], self._sign(body))
        except FileNotFoundError:
            raise self._tampered_log(name, f"{USES_HEAD_FILE} is missing") from None
        except (ValueError, TypeError, KeyError):
            valid = False
        if not valid or body["cameo"] != name:
            raise self._tampered_log(name, f"{USES_HEAD_FILE} does not match its signature")
        count = body["count"]
        # Lines past the head are fine (a crash between the append and the head's update); fewer lines are not.
        if not isinstance(count, int) or count > len(links) or (count and links[count - 1] != body["last"]):
            raise self._tampered_log(name, f"it holds {len(links)} lines where {count} were written")
        return entries, links, torn

    def _chain_old_log(self, name: str, record: dict[str, Any]) -> dict[str, Any]:
        """Sign the plain use log a cameo made before logs were chained, once, and mark its record (locked)."""
        directory = self.path(name)
        self.get(name, verify_files=False)  # the record must be genuine before it vouches for the log
        entries = []
        with contextlib.suppress(FileNotFoundError):
            for raw in (directory / USES_FILE).read_text().splitlines():
                with contextlib.suppress(json.JSONDecodeError):  # a torn line from a crash
                    item = json.loads(raw)
                    if isinstance(item, dict):
                        entries.append(item)
        lines, last = [], ""
        for index, entry in enumerate(entries):
            last = self._link(name, index, last, entry)
            lines.append(json.dumps({"entry": entry, "mac": last}, sort_keys=True) + "\n")
        _write_private(directory / USES_FILE, "".join(lines).encode())
        self._write_head(directory, name, len(lines), last)
        record = {**record, USE_LOG_CHAINED: True}
        self._write_record(directory, record)
        return record


def _widen_unverified(name: str) -> CameoNotAllowedError:
    return CameoNotAllowedError(
        f"cameo {name!r} is unverified, so only you may use it; " + VERIFY_HINT.split("; ", 1)[1].replace("NAME", name),
        "widen_unverified",
    )


def _check_permission(permission: str) -> str:
    if permission not in PERMISSIONS:
        raise InvalidRequestError(f"permission must be one of {', '.join(PERMISSIONS)}, got {permission!r}")
    return permission


def _upgrade(record: dict) -> dict:
    """A format 1 record as format 2: the login name it wrote for the server's owner becomes SERVER_OWNER.

    Before user keys had their own identity, the owner (CLI, master key) acted as
    the login name; such cameos stay the owner's, and a user key of that name
    does not inherit them.
    """
    if record.get("format", 1) >= FORMAT:
        return record
    login = _login_name()

    def owner_of(user: str) -> str:
        return SERVER_OWNER if user == login else user

    return {
        **record,
        "format": FORMAT,
        "owner": owner_of(record["owner"]),
        "allowed_users": sorted({owner_of(u) for u in record.get("allowed_users", ())}),
    }


def _from_record(record: dict, directory: Path) -> Cameo:
    record = _upgrade(record)
    embedding = record.get("embedding")
    return Cameo(
        name=record["name"],
        owner=record["owner"],
        permission=record["permission"],
        allowed_users=tuple(record.get("allowed_users", ())),
        created_at=float(record.get("created_at", 0)),
        expires_at=record.get("expires_at"),
        revoked_at=record.get("revoked_at"),
        references=tuple(record.get("references", ())),
        faces=tuple(record.get("faces", ())),
        voice=record.get("voice"),
        embedding=None if embedding is None else tuple(embedding),
        embedding_model=record.get("embedding_model"),
        capture=record.get("capture", {}),
        voice_allowed=record.get(VOICE_PERMISSION) is True,
        remote_allowed=record.get(REMOTE_PERMISSION) is True,
        directory=directory,
        verification=record.get("verification") or {"status": "unverified", "why": UNVERIFIED_BEFORE},
        id=record.get("id") or record["name"],
    )


# --------------------------------------------------------------------------- generation


@dataclass(frozen=True)
class Conditioning:
    """What a backend gets besides the request: the cameos it may use and a speech line to follow."""

    cameos: tuple[Cameo, ...] = ()
    speech: tuple[np.ndarray, int] | None = None  # mono float32, sample rate
    speech_source: str | None = None
    voice_line: dict[str, Any] | None = None  # a dialogue line spoken by a voice model (kinema.cameo.voice_lines)
    speaker: str | None = None  # the id of the cameo whose voice is heard (recorded, or a line spoken in it)

    def __bool__(self) -> bool:
        return bool(self.cameos) or self.speech is not None


def requester(request: GenerationRequest) -> str:
    return request.user or local_user()


def authorize_request(request: GenerationRequest, store: CameoStore | None = None) -> tuple[Cameo, ...]:
    """Fail fast (at submit time) when the requester may not use one of the request's cameos."""
    named = _authorized(request, store)
    _authorize_voice(request, named)
    return tuple({c.id: c for c in named.values()}.values())  # a name and its id: once


def _authorize_voice(request: GenerationRequest, named: dict[str, Cameo]) -> None:
    """The cameo that speaks (its recorded voice, or a dialogue line in its voice) needs its voice permission."""
    speaker = request.speech if isinstance(request.speech, str) and request.speech in named else None
    if speaker is None and request.dialogue is not None and len(named) == 1:
        speaker = next(iter(named))
    if speaker is not None:
        named[speaker].require_voice(requester(request))


def _authorized(request: GenerationRequest, store: CameoStore | None = None) -> dict[str, Cameo]:
    """Each of the request's cameos as the requester means it (a name, or ``char_ID``), once consent is checked."""
    if not request.cameos:
        return {}
    store = store or CameoStore()
    user = requester(request)
    return {ref: store.authorize(ref, user) for ref in request.cameos}


def prepare(
    request: GenerationRequest, store: CameoStore | None = None, *, seconds: float | None = None
) -> Conditioning:
    """Check consent for every cameo of ``request`` and load what the backend needs; raises if any is refused.

    A dialogue line is spoken here, at most ``seconds`` long (the clip's length)."""
    if not request.cameos and request.speech is None and request.dialogue is None:
        return Conditioning()
    named = _authorized(request, store)
    cameos = tuple({c.id: c for c in named.values()}.values())
    speech = source = speaker = None
    if request.dialogue is not None:
        from kinema.cameo import voice_lines

        speech, source, line = voice_lines.speak_line(request, named, requester(request), seconds)
        ref = voice_lines.voice_ref(request)
        return Conditioning(cameos, speech, source, line, named[ref].id if ref in named else None)
    if request.speech is not None:
        if isinstance(request.speech, str) and request.speech in named:
            cameo = named[request.speech]
            cameo.require_voice(requester(request))
            speaker = cameo.id
            if cameo.voice_path is None:
                raise InvalidRequestError(f"cameo {cameo.name!r} has no voice sample; re-create it with --audio")
            speech, source = load_speech(cameo.voice_path), f"cameo:{cameo.name}"
        else:
            try:
                speech = load_speech(request.speech)
            except AudioReadError as error:
                raise InvalidRequestError(f"speech: {error}") from None
            source = Path(request.speech).name if not isinstance(request.speech, tuple) else "audio"
    return Conditioning(cameos, speech, source, speaker=speaker)


def recheck(request: GenerationRequest, conditioning: Conditioning, store: CameoStore | None = None) -> None:
    """Consent again, right before the clip is handed over: a revoke during generation still counts."""
    if conditioning.cameos:
        store = store or CameoStore()
        user = requester(request)
        for cameo in conditioning.cameos:
            fresh = store.authorize(character_id(cameo), user)
            if cameo.id == conditioning.speaker:
                fresh.require_voice(user)  # its voice's consent, withdrawn during generation, counts too


def finish(request: GenerationRequest, clip: Clip, conditioning: Conditioning, store: CameoStore | None = None) -> None:
    """Score identity, note the cameos in the clip's metadata, and log the use with each cameo."""
    if conditioning.voice_line:
        clip.metadata["voice_line"] = conditioning.voice_line  # provenance: a synthetic voice, and whose
    if not conditioning.cameos:
        if conditioning.speech_source:
            clip.metadata["speech"] = conditioning.speech_source
        return
    store = store or CameoStore()
    use_id = secrets.token_hex(8)
    clip.metadata["cameos"] = [c.id for c in conditioning.cameos]  # ids: note_saved logs each save by them
    clip.metadata["cameo_use"] = use_id
    # Provenance says whether the person shown proved it was them when the cameo was captured.
    clip.metadata["cameo_consent"] = {c.id: "verified" if c.verified else "unverified" for c in conditioning.cameos}
    if conditioning.speech_source:
        clip.metadata["speech"] = conditioning.speech_source
    clip.metadata["cameo_identity"] = identity_scores(clip.frames, conditioning.cameos)
    user = requester(request)
    for cameo in conditioning.cameos:
        store.log_use(
            cameo.id,
            {
                "use": use_id,
                "at": int(time.time()),
                "user": user,
                "prompt": request.prompt,
                "backend": clip.metadata.get("backend") or request.backend,
                "seed": clip.metadata.get("seed"),
                "identity": clip.metadata["cameo_identity"].get(cameo.id, {}).get("score"),
                # Its owner sees which uses made it speak: its recording, or a line a voice model said in its voice.
                **(
                    {"voice": "line" if conditioning.voice_line else "recorded"}
                    if cameo.id == conditioning.speaker
                    else {}
                ),
            },
        )


@hookimpl
def clip_saved(clip: Clip, path: Any) -> None:
    note_saved(clip, path)


def note_saved(clip: Clip, path: Any, store: CameoStore | None = None) -> None:
    """Add where a cameo clip was saved to each cameo's use log (the ``clip_saved`` hook)."""
    # A clip's own use, or each shot's of a storyboard film (kinema.storyboard.run).
    made_with = [(clip.metadata.get("cameo_use"), clip.metadata.get("cameos") or [])]
    made_with += [(shot.get("cameo_use"), shot.get("cameos") or []) for shot in clip.metadata.get("shots") or ()]
    saved = str(Path(path).resolve())
    for use_id, names in made_with:
        if not use_id:
            continue
        store = store or CameoStore()
        for name in names:
            if NAME_PATTERN.match(str(name)) and store.exists(name):
                store.log_use(name, {"use": use_id, "saved_to": saved, "at": int(time.time())})


def identity_scores(frames: np.ndarray, cameos: tuple[Cameo, ...], *, samples: int = 8) -> dict[str, dict[str, Any]]:
    """How closely faces in ``frames`` match each cameo: cosine similarity of identity embeddings.

    For each sampled frame the best-matching face counts; the score is their
    mean over frames where a face was found. Without an embedding model
    installed, no score is guessed.
    """
    try:
        embedder = facelib.get_embedder()
    except facelib.FaceModelError as error:
        return {c.id: {"score": None, "note": str(error)} for c in cameos}
    if embedder is None:
        note = "no face embedding model installed (kinema models pull opencv/face_recognition_sface)"
        return {c.id: {"score": None, "note": note} for c in cameos}
    targets: dict[str, np.ndarray | None] = {}
    for cameo in cameos:
        if cameo.embedding is not None and cameo.embedding_model == embedder.name:
            targets[cameo.id] = np.asarray(cameo.embedding, np.float32)
        else:
            # Captured before this model was installed, or with another one: embed its stored aligned crops now.
            vectors = embedder.embed(cameo.face_images()) if cameo.faces else None
            targets[cameo.id] = None if vectors is None else vectors.mean(0)
    detector = facelib.get_detector()
    picks = np.unique(np.linspace(0, len(frames) - 1, min(samples, len(frames))).round().astype(int))
    per_cameo: dict[str, list[float]] = {name: [] for name in targets}
    for index in picks:
        faces = detector.detect(frames[index], min_size=16, short_side=480)  # people in scenes are small
        if not faces:
            continue
        vectors = embedder.embed([facelib.aligned_crop(frames[index], f) for f in faces])
        for name, target in targets.items():
            if target is not None:
                per_cameo[name].append(max(facelib.cosine(v, target) for v in vectors))
    out = {}
    for name, scores in per_cameo.items():
        entry: dict[str, Any] = {
            "model": embedder.name,
            "frames_checked": int(len(picks)),
            "frames_with_face": len(scores),
        }
        entry["score"] = round(float(np.mean(scores)), 4) if scores else None
        if not scores:
            entry["note"] = "no face found in the sampled frames"
        out[name] = entry
    return out
