"""The shot cache: finished shots kept by a hash of everything that changes how they look and sound."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from kinema.cameo.store import ID_PREFIX, RECORD_FILE, CameoError, CameoStore, requester
from kinema.clip import Clip
from kinema.errors import InvalidRequestError
from kinema.home import kinema_home
from kinema.styles import apply_style
from kinema.version import __version__


def cache_key(request: Any, backend: Any) -> str:
    """A hash of everything that changes what a shot looks and sounds like."""
    effective = apply_style(request)
    fields = {f.name: _fingerprint(getattr(effective, f.name)) for f in dataclasses.fields(effective)}
    if effective.cameos:  # a cameo re-recorded under the same name must not bring back the old likeness
        store = CameoStore()
        fields["cameo_records"] = [
            _fingerprint(store.path(_id(store, name, effective)) / RECORD_FILE) for name in effective.cameos
        ]
    identity = {
        "request": fields,
        "backend": backend.name,
        "backend_class": type(backend).__qualname__,
        "model": backend.model_id,
        "kinema": __version__,
    }
    blob = json.dumps(identity, sort_keys=True, default=repr).encode()
    return hashlib.sha256(blob).hexdigest()


def _id(store: CameoStore, ref: str, request: Any) -> str:
    """The folder of the cameo ``ref`` means for the request's user (names are per user); unknown: ``ref``."""
    try:
        return store.resolve(ref, requester(request)).id
    except CameoError:
        return ref[len(ID_PREFIX) :] if ref.startswith(ID_PREFIX) else ref


def _fingerprint(value: Any) -> Any:
    """A JSON-able stand-in for ``value`` that changes whenever its content does (arrays and files by hash)."""
    if isinstance(value, np.ndarray):
        return {
            "shape": list(value.shape),
            "dtype": str(value.dtype),
            "sha256": hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest(),
        }
    if isinstance(value, Path) or (isinstance(value, str) and os.sep in value and os.path.isfile(value)):
        path = Path(value)
        if path.is_file():
            return {"file": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
        return str(path)
    if isinstance(value, (list, tuple)):
        return [_fingerprint(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _fingerprint(v) for k, v in value.items()}
    return value


DEFAULT_LIMIT_GB = 20.0  # a 5 s 720p shot is ~330 MB raw: room for a few storyboards' worth of shots
STALE_PART_SECONDS = 3600  # a .part this old belongs to a run that died mid-write


def limit_from_environment() -> int:
    """The cache's size limit in bytes: ``KINEMA_SHOT_CACHE_GB`` (0 keeps nothing), else 20 GB."""
    raw = os.environ.get("KINEMA_SHOT_CACHE_GB", "").strip()
    try:
        gigabytes = float(raw) if raw else DEFAULT_LIMIT_GB
    except ValueError:
        gigabytes = -1.0
    if not gigabytes >= 0:  # also refuses nan
        raise InvalidRequestError(f"KINEMA_SHOT_CACHE_GB must be a number of gigabytes, 0 or more; got {raw!r}")
    return int(gigabytes * 1e9)


class ShotCache:
    """Finished shots as ``.npz`` (raw frames and samples: exact, so a continue shot sees the very same last frame).

    Raw frames are large, so the folder is kept under ``limit_bytes`` (default: ``KINEMA_SHOT_CACHE_GB``):
    after each write the least recently used shots go first, never the one just written.
    """

    def __init__(self, folder: Path | None = None, limit_bytes: int | None = None):
        self.folder = folder or kinema_home() / "cache" / "shots"
        self.limit_bytes = limit_from_environment() if limit_bytes is None else limit_bytes

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.npz"

    def get(self, key: str) -> Any:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                audio = data["audio"] if data["audio"].size else None
                rate = int(data["sample_rate"]) or None
                fps = Fraction(int(data["fps"][0]), int(data["fps"][1]))
                clip = Clip(
                    data["frames"], fps, audio, rate if audio is not None else None, json.loads(str(data["metadata"]))
                )
        except (OSError, ValueError, KeyError):  # a damaged entry is just a miss; it gets rewritten
            return None
        os.utime(path)  # recently used: the size limit evicts it last
        return clip

    def put(self, key: str, clip: Any) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(key)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.part")
        try:
            with open(tmp, "wb") as handle:
                np.savez(
                    handle,
                    frames=clip.frames,
                    audio=clip.audio if clip.audio is not None else np.zeros((0, 0), np.float32),
                    sample_rate=np.int64(clip.sample_rate or 0),
                    fps=np.array([clip.fps.numerator, clip.fps.denominator], np.int64),
                    metadata=np.array(json.dumps(clip.metadata, sort_keys=True, default=str)),
                )
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self.trim(keep=path)
        return path

    def purge_uses(self, uses: set[str]) -> list[Path]:
        """Delete every cached shot made as one of the cameo ``uses`` (a clip taken down by the person in it)."""
        removed = []
        for entry in sorted(self.folder.glob("*.npz")) if self.folder.is_dir() else ():
            try:
                with np.load(entry, allow_pickle=False) as data:
                    use = json.loads(str(data["metadata"])).get("cameo_use")
            except (OSError, ValueError, KeyError):
                continue
            if use in uses:
                entry.unlink(missing_ok=True)
                removed.append(entry)
        return removed

    def trim(self, keep: Path | None = None) -> list[Path]:
        """Delete least recently used shots until the folder fits the limit; returns what went."""
        entries = []
        now = time.time()
        for entry in self.folder.glob("*"):
            try:
                stat = entry.stat()
            except FileNotFoundError:  # another run removed it meanwhile
                continue
            if entry.suffix == ".npz":
                entries.append((stat.st_mtime, stat.st_size, entry))
            elif entry.name.endswith(".part") and now - stat.st_mtime > STALE_PART_SECONDS:
                entry.unlink(missing_ok=True)
        total = sum(size for _, size, _ in entries)
        removed = []
        for _, size, entry in sorted(entries, key=lambda item: item[0]):
            if total <= self.limit_bytes:
                break
            if entry == keep:
                continue
            entry.unlink(missing_ok=True)
            total -= size
            removed.append(entry)
        return removed
