"""Where a clip came from: the parent of an extend or a remix, recorded in the child's metadata."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Union

from kinema.clip import Clip
from kinema.engine import get_backends
from kinema.errors import InvalidRequestError
from kinema.media.files import MediaError
from kinema.media.hashing import file_sha256
from kinema.request import DEFAULT_BACKEND
from kinema.tiers import DEFAULT_TIER, TIERS, check_tier

Source = Union[str, "os.PathLike[str]", Any]  # a path to an MP4, or a kinema.Clip


def open_source(source: Source, *, video_id: str | None = None) -> tuple[Any, dict]:
    """The clip to build on, and the record that names it as the parent."""
    if isinstance(source, Clip):
        return source, parent_record(source, video_id=video_id)
    path = Path(source).expanduser()
    if not path.is_file():
        raise InvalidRequestError(f"clip {str(path)!r} does not exist or is not a file")
    try:
        clip = Clip.load(path)
    except MediaError as error:
        raise InvalidRequestError(f"cannot use {str(path)!r} as a clip: {error}") from None
    return clip, parent_record(clip, path=path, video_id=video_id)


def pick_backend(clip: Any, backend: str | None, model: str | None) -> tuple[str, str | None]:
    """The backend (and model) to build on ``clip`` with: the caller's choice, else the one that made it, else tiny."""
    if backend:
        return backend, model
    made_by = clip.metadata.get("backend")
    if isinstance(made_by, str) and made_by:
        registered = get_backends().get(made_by)
        if registered is not None:
            made_with = clip.metadata.get("model")
            return made_by, model or (made_with if made_with and made_with != registered.model_id else None)
    return DEFAULT_BACKEND, model


def pick_tier(clip: Any, tier: str | None) -> str:
    """The caller's tier, else the one ``clip`` was made at (a draft extends as a draft), else standard."""
    if tier is not None:
        return check_tier(tier)
    made_at = clip.metadata.get("tier")
    return made_at if isinstance(made_at, str) and made_at in TIERS else DEFAULT_TIER


def parent_record(clip: Any, *, path: Path | None = None, video_id: str | None = None) -> dict:
    record: dict[str, Any] = {}
    if video_id:
        record["id"] = video_id
    if path is not None:
        record["path"] = str(Path(path).resolve())
        record["sha256"] = file_sha256(path)
    else:
        digest = hashlib.sha256(clip.frames.tobytes())
        if clip.audio is not None:
            digest.update(clip.audio.tobytes())
        record["content_sha256"] = digest.hexdigest()
    for key in ("kind", "prompt", "seed", "backend", "model"):
        if clip.metadata.get(key) is not None:
            record[key] = clip.metadata[key]
    record["duration"] = round(clip.duration, 6)
    return record


def resize_frames(frames: Any, width: int, height: int) -> Any:
    """Frames resized to ``width`` x ``height`` (a backend snapped the size; the parent's size wins)."""
    import numpy as np
    from PIL import Image

    if frames.shape[1:3] == (height, width):
        return frames
    return np.stack([np.asarray(Image.fromarray(f).resize((width, height), Image.Resampling.LANCZOS)) for f in frames])
