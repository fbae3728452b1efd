"""Cameos and speech for a job on a Ray worker: what the server sends, and how the worker rebuilds it.

The server keeps the cameo store. It checks consent when the job starts (``kinema.cameo.store.prepare``), and
sends the worker only what generating needs from each cameo the requester may use: its name and its reference
portraits. Never its face crops, identity embedding, voice file, owner's allow list, capture or verification
report (every field but its id, name, owner, permission and dates is emptied); a speech line (a cameo's voice
included) goes as the samples the server loaded. Consent is asked again while the job runs
and before the clip is kept, and the use is scored and logged on the server (``kinema.server.ray_pool``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from kinema.cameo.store import Conditioning


def for_worker(conditioning: Conditioning) -> dict | None:
    """What a worker gets of ``conditioning`` (None when the job has no cameo and no speech line)."""
    if not conditioning:
        return None
    cameos = []
    for cameo in conditioning.cameos:
        portraits = [(cameo.directory / name).read_bytes() for name in cameo.references]
        cameos.append((_bare(cameo), portraits))
    return {"cameos": cameos, "speech": conditioning.speech, "speech_source": conditioning.speech_source}


# What a worker may know of a cameo besides its portraits; every other field is emptied, new ones included.
_KEPT = frozenset({"id", "name", "owner", "permission", "created_at", "expires_at", "revoked_at"})
_EMPTY = {"allowed_users": (), "references": (), "faces": (), "voice": None, "embedding": None, "embedding_model": None}


def _bare(cameo: Any) -> Any:
    empty: dict[str, Any] = {}
    for spec in dataclasses.fields(cameo):
        if spec.name in _KEPT:
            continue
        if spec.name in _EMPTY:
            empty[spec.name] = _EMPTY[spec.name]
        elif spec.default_factory is not dataclasses.MISSING:
            empty[spec.name] = spec.default_factory()
        elif spec.default is not dataclasses.MISSING:
            empty[spec.name] = spec.default
    return dataclasses.replace(cameo, **empty)


def on_worker(share: dict, folder: Path) -> Conditioning:
    """The worker's ``Conditioning`` from what the server sent; the portraits are written into ``folder``."""
    cameos: list[Any] = []
    for index, (cameo, portraits) in enumerate(share["cameos"]):
        own = folder / f"cameo-{index}"
        own.mkdir(mode=0o700)
        names = []
        for n, data in enumerate(portraits):
            names.append(f"reference-{n}.png")
            (own / names[-1]).write_bytes(data)
        cameos.append(dataclasses.replace(cameo, references=tuple(names), directory=own))
    return Conditioning(tuple(cameos), share["speech"], share["speech_source"])


__all__ = ["for_worker", "on_worker"]
