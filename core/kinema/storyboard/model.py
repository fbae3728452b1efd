"""Storyboards: several shots in one world, made into one film with sound.

A storyboard is a YAML/JSON file or plain text with one shot per line::

    Title: The night market
    Setting: a rain-soaked night market, neon signs, steam from food stalls
    Character: Mara: a woman in a yellow raincoat with short black hair
    Style: cinematic

    Shot 1 (2s): Mara walks between the stalls, looking for someone
      Camera: slow dolly in
    Shot 2 (3s, continue): Mara stops and turns
      Mara: "Where did it go?"
    Shot 3 (2s): a small grey robot hides behind a crate

Every shot's prompt carries the world (setting, characters, style), so the
places and people stay the same. A ``continue`` shot starts from the previous
shot's last frame (image-to-video), a ``hard`` cut starts afresh. Shot N gets
seed ``seed + N - 1``. Finished shots are cached by everything that affects
them, so editing shot 2 regenerates shot 2 and the ``continue`` shots after it.

Each shot is generated a little longer than asked (backends make 8k+1 or 4k+1
frames; a shot after a cut also makes one frame before its first, and every
shot but the last one frame after its end) and trimmed to the frames it asked
for, so the film lasts exactly the sum of the shots. The spare sound is what
the audio crossfades at the cuts overlap (see ``kinema.assemble``).

This module holds the model (``Storyboard``, ``Shot``, ``World``, ``Line``)
and the way in (``load_storyboard``, ``parse_storyboard``); the rest lives
beside it and is re-exported here: ``storyboard_parse`` (YAML, JSON and shot
lines to plain data), ``storyboard_check`` (``from_dict``: that data to a
checked ``Storyboard``), ``storyboard_plan`` (``plan_storyboard``),
``storyboard_run`` (``run_storyboard``) and ``storyboard_cache`` (``ShotCache``).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

from .errors import InvalidRequestError

CUTS = ("hard", "continue")
TEXT_SUFFIXES = (".txt", ".md", ".text", ".storyboard")
STRUCTURED_SUFFIXES = (".yaml", ".yml", ".json")
MAX_SHOTS = 500


class StoryboardError(InvalidRequestError):
    """A storyboard has problems; ``problems`` lists ``(line or None, message)`` for each."""

    def __init__(self, source: str, problems: list[tuple[Optional[int], str]]):
        self.source = source
        self.problems = problems
        if len(problems) == 1:
            line, message = problems[0]
            text = f"{source}, line {line}: {message}" if line else f"{source}: {message}"
        else:
            shown = [f"  line {line}: {message}" if line else f"  {message}" for line, message in problems[:20]]
            more = [f"  … and {len(problems) - 20} more"] if len(problems) > 20 else []
            text = "\n".join([f"{source} has {len(problems)} problems:", *shown, *more])
        super().__init__(text)


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class Line:
    """One line of dialogue; LTX-2 voices quoted speech in the prompt, other backends take it as a description."""

    speaker: str
    text: str


@dataclass(frozen=True)
class Shot:
    prompt: str
    seconds: Optional[float] = None  # None: the storyboard's default shot length
    camera: str = ""
    dialogue: tuple[Line, ...] = ()
    cameos: tuple[str, ...] = ()
    cut: str = "hard"  # how this shot follows the previous one: "hard" or "continue"
    seed: Optional[int] = None  # None: storyboard seed + shot index
    style: Optional[str] = None  # overrides the world's style
    negative_prompt: str = ""
    image: Any = None  # a first frame for this shot (a path, or uint8 [H, W, 3] from a data URL), not a hard start
    line: Optional[int] = None  # where the shot is written, for messages


@dataclass(frozen=True)
class World:
    """What every shot shares. Characters are ``(name, description)``; a nameless one is in every shot."""

    setting: str = ""
    characters: tuple[tuple[str, str], ...] = ()
    style: Optional[str] = None


@dataclass(frozen=True)
class Storyboard:
    shots: tuple[Shot, ...]
    world: World = World()
    title: str = ""
    seed: int = 0  # storyboards are reproducible by default: another seed is another take
    seconds: Optional[float] = None  # default shot length; None: the backend's default clip length
    negative_prompt: str = ""
    backend: str = "tiny"
    model: Optional[str] = None
    width: Optional[int] = None
    height: Optional[int] = None
    fps: Optional[float] = None
    steps: Optional[int] = None
    guidance: Optional[float] = None
    tier: str = "standard"  # quality tier of every shot (kinema.tiers.TIERS)
    audio: bool = True
    source: str = "<storyboard>"

    def with_(self, **changes: Any) -> "Storyboard":
        """A copy with ``changes``; ``None`` values are ignored (handy for optional CLI flags)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


# --------------------------------------------------------------------------- reading


def load_storyboard(path: Union[str, "os.PathLike[str]"]) -> Storyboard:
    """Read a storyboard file: ``.yaml``/``.yml``/``.json`` as structured data, anything else as shot lines."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InvalidRequestError(f"storyboard {str(path)!r} does not exist or is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise InvalidRequestError(f"storyboard {path} is not UTF-8 text ({error.reason} at byte {error.start})") from None
    suffix = path.suffix.lower()
    kind = "json" if suffix == ".json" else "yaml" if suffix in (".yaml", ".yml") else "text" if suffix in TEXT_SUFFIXES else "auto"
    return parse_storyboard(text, format=kind, source=str(path), base_dir=path.parent)



def parse_storyboard(text: str, *, format: str = "auto", source: str = "<storyboard>",
                     base_dir: Optional[Path] = None, files: bool = True) -> Storyboard:
    """Parse storyboard ``text``; ``format`` is "yaml", "json", "text" or "auto" (sniffed)."""
    from . import storyboard_check, storyboard_parse

    if format == "auto":
        format = storyboard_parse.sniff_format(text)
    if format == "text":
        data, lines = storyboard_parse.parse_text(text, source)
    elif format in ("yaml", "json"):
        data = storyboard_parse.parse_structured(text, format, source)
        lines = None
    else:
        raise ValueError(f"unknown storyboard format {format!r}")
    return storyboard_check.from_dict(data, source=source, base_dir=base_dir, files=files, _lines=lines)


# --------------------------------------------------------------------------- the rest, from the modules beside this one

# Imported on first use: those modules import the model above, so importing them here up front would be circular.
_ELSEWHERE = {
    "from_dict": "storyboard_check",
    "ShotPlan": "storyboard_plan", "compose_prompt": "storyboard_plan", "plan_storyboard": "storyboard_plan",
    "ShotResult": "storyboard_run", "StoryboardResult": "storyboard_run", "shot_request": "storyboard_run",
    "run_storyboard": "storyboard_run",
    "ShotCache": "storyboard_cache", "cache_key": "storyboard_cache",
}

if TYPE_CHECKING:
    from .storyboard_cache import ShotCache, cache_key
    from .storyboard_check import from_dict
    from .storyboard_plan import ShotPlan, compose_prompt, plan_storyboard
    from .storyboard_run import ShotResult, StoryboardResult, run_storyboard, shot_request

__all__ = [
    "CUTS", "MAX_SHOTS", "STRUCTURED_SUFFIXES", "TEXT_SUFFIXES", "Line", "Shot", "ShotCache", "ShotPlan", "ShotResult",
    "Storyboard", "StoryboardError", "StoryboardResult", "World", "cache_key", "compose_prompt", "from_dict",
    "load_storyboard", "parse_storyboard", "plan_storyboard", "run_storyboard", "shot_request",
]


def __getattr__(name: str) -> Any:
    if name in _ELSEWHERE:
        value = getattr(importlib.import_module(f"{__package__}.{_ELSEWHERE[name]}"), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_ELSEWHERE})
