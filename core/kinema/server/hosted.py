"""The hosted OpenAI Videos API's own values, made on this machine: ``sora-2`` and ``sora-2-pro``, its four sizes
and its durations.

A client written for the hosted API sends ``model="sora-2"``, ``size="1280x720"``, ``seconds="8"``. Each
``sora-*`` name runs a kinema backend at a tier: by default the best model installed here (LTX-2, else Wan
2.2, else Wan VACE, else the server's default backend) at ``standard`` for ``sora-2`` and ``final`` for
``sora-2-pro``; ``$KINEMA_HOME/openai_models.json`` can name others::

    {"sora-2": {"backend": "ltx2", "tier": "draft"},
     "sora-2-pro": {"backend": "wan", "model": "Wan-AI/Wan2.2-TI2V-5B-Diffusers", "tier": "final"}}

With such a name, the hosted sizes and seconds are snapped to what the backend makes: a size beyond its
pixel limit (or any size on a demo backend, which makes only small pictures) becomes the same shape at the
backend's own size, and a length beyond its limit becomes the longest it makes. The response's ``size`` and
``seconds`` say what is made, and ``kinema.notes`` says why.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from kinema.backends.limits import job_limits
from kinema.errors import InvalidRequestError
from kinema.home import kinema_home
from kinema.tiers import TIERS

CONFIG_FILE = "openai_models.json"
OPENAI_PREFIX = "sora-"
DEFAULT_TIERS = {"sora-2": "standard", "sora-2-pro": "final"}
# The best model first: the ones kinema runs for the hosted names when the configuration names none.
BEST_BACKENDS = ("ltx2", "wan", "wan-vace")
SIZES = ("720x1280", "1280x720", "1024x1792", "1792x1024")
SECONDS = ("4", "8", "12")
EXTENSION_SECONDS = ("4", "8", "12", "16", "20")
_DATED = re.compile(r"-\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class HostedModel:
    """What one ``sora-*`` name runs here."""

    name: str  # as the client sent it, and as the response shows it
    backend: str
    model: str | None
    tier: str
    why: str  # for the job's notes

    def note(self) -> str:
        return (
            f"{self.name} runs {self.backend}{f' ({self.model})' if self.model else ''} at tier {self.tier}: {self.why}"
        )


def is_hosted(model: str | None) -> bool:
    return isinstance(model, str) and model.startswith(OPENAI_PREFIX)


def canonical(name: str) -> str:
    """``sora-2-pro-2025-10-06`` -> ``sora-2-pro``; every other ``sora-*`` name is ``sora-2``."""
    base = _DATED.sub("", name)
    return "sora-2-pro" if base.startswith("sora-2-pro") else "sora-2"


def read_config() -> dict[str, dict[str, Any]]:
    """``$KINEMA_HOME/openai_models.json``, checked; {} when there is none."""
    path = kinema_home() / CONFIG_FILE
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InvalidRequestError(f"{CONFIG_FILE} in the data directory is not valid JSON: {error}") from None
    if not isinstance(config, dict) or not all(isinstance(v, dict) for v in config.values()):
        raise InvalidRequestError(
            f'{CONFIG_FILE} must map model names to {{"backend": ..., "model": ..., "tier": ...}} objects'
        )
    for name, entry in config.items():
        unknown = set(entry) - {"backend", "model", "tier"}
        if unknown:
            raise InvalidRequestError(
                f"{CONFIG_FILE}: {name}: unknown keys {sorted(unknown)}; use backend, model, tier"
            )
        if "tier" in entry and entry["tier"] not in TIERS:
            raise InvalidRequestError(
                f"{CONFIG_FILE}: {name}: tier must be one of {', '.join(TIERS)}, got {entry['tier']!r}"
            )
    return config


def best_installed(backends: dict[str, Any], default_backend: str) -> str:
    """The first of ``BEST_BACKENDS`` whose weights are here, else the server's default backend."""
    for name in BEST_BACKENDS:
        backend = backends.get(name)
        if backend is None or backend.is_demo:
            continue
        try:
            if backend.status().ready:
                return name
        except Exception:  # noqa: BLE001 - a backend that cannot say is not the best one
            continue
    return default_backend


def hosted_model(name: str, backends: dict[str, Any], default_backend: str) -> HostedModel:
    """What ``name`` (a ``sora-*`` model) runs here: the configuration's entry, else the defaults."""
    config = read_config()
    entry = config.get(name) or config.get(_DATED.sub("", name)) or config.get(canonical(name)) or {}
    backend = entry.get("backend")
    if backend is not None:
        if backend not in backends:
            raise InvalidRequestError(
                f"{CONFIG_FILE}: {name} names backend {backend!r}, which this server does not have; choose one of"
                f" {', '.join(sorted({b.name for b in backends.values()}))}"
            )
        why = f"as {CONFIG_FILE} says"
    else:
        backend = best_installed(backends, default_backend)
        why = "the best model installed here" if backend in BEST_BACKENDS else "the server's default backend"
    tier = entry.get("tier") or DEFAULT_TIERS[canonical(name)]
    return HostedModel(name, backend, entry.get("model"), tier, why)


def fit_size(backend: Any, width: int, height: int) -> tuple[int, int, str | None]:
    """A hosted size as ``backend`` makes it: kept when within its pixel limit (the plan snaps it to its grid),
    else, and always on a demo backend, the same shape at the backend's own size. Returns (w, h, note)."""
    pixels = job_limits(backend).pixels
    native = backend.defaults.width * backend.defaults.height
    if not backend.is_demo and width * height <= pixels:
        return width, height, None
    area = min(native, pixels)
    multiple = max(1, int(backend.size_multiple))
    scale = math.sqrt(area / (width * height))
    new_w = max(multiple, round(width * scale / multiple) * multiple)
    new_h = max(multiple, round(height * scale / multiple) * multiple)
    what = "a demo that makes small pictures" if backend.is_demo else f"at most {pixels:,} pixels a frame"
    return new_w, new_h, f"size {width}x{height} made as {new_w}x{new_h}: {backend.name} is {what}; same shape"


def fit_seconds(backend: Any, seconds: float, fps: float, *, context_frames: int = 0) -> tuple[float, str | None]:
    """A hosted length as ``backend`` makes it in one generation: at most its limit in seconds and frames
    (``context_frames`` of them taken by an extension's context). Returns (seconds, note)."""
    limits = job_limits(backend)
    multiple = max(1, int(backend.frame_multiple))
    frames = multiple * ((limits.frames - 1 - context_frames) // multiple)
    longest = min(limits.seconds, frames / fps)
    if seconds <= longest:
        return seconds, None
    longest = math.floor(longest * 1000) / 1000
    return longest, f"{seconds:g} s made as {longest:g} s: the longest {backend.name} makes in one generation"


@dataclass(frozen=True)
class Fitted:
    """A request with a ``sora-*`` model, as the backend makes it."""

    tier: str
    width: int | None
    height: int | None
    seconds: float | None
    notes: tuple[str, ...]


def fit_request(
    name: str,
    backend_name: str,
    backends: dict[str, Any],
    default_backend: str,
    *,
    width: int | None,
    height: int | None,
    seconds: float | None,
    fps: float | None,
) -> Fitted:
    """The tier, size and length a ``sora-*`` request runs at on ``backend_name``, and notes saying why."""
    hosted = hosted_model(name, backends, default_backend)
    backend = backends[backend_name]
    notes = [hosted.note()] if hosted.backend == backend_name else []
    if width is not None and height is not None:
        width, height, note = fit_size(backend, width, height)
        notes += [note] if note else []
    if seconds is not None:
        seconds, note = fit_seconds(backend, seconds, float(fps or backend.defaults.fps))
        notes += [note] if note else []
    return Fitted(hosted.tier, width, height, seconds, tuple(notes))
