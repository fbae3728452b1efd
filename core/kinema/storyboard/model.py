"""The storyboard model: ``Storyboard``, ``Shot``, ``World`` and ``Line``, and the error that lists problems."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from kinema.errors import InvalidRequestError
from kinema.request import DEFAULT_BACKEND
from kinema.tiers import DEFAULT_TIER

CUTS = ("hard", "continue")
TEXT_SUFFIXES = (".txt", ".md", ".text", ".storyboard")
STRUCTURED_SUFFIXES = (".yaml", ".yml", ".json")
MAX_SHOTS = 500


class StoryboardError(InvalidRequestError):
    """A storyboard has problems; ``problems`` lists ``(line or None, message)`` for each."""

    def __init__(self, source: str, problems: list[tuple[int | None, str]]):
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
    seconds: float | None = None  # None: the storyboard's default shot length
    camera: str = ""
    dialogue: tuple[Line, ...] = ()
    cameos: tuple[str, ...] = ()
    cut: str = "hard"  # how this shot follows the previous one: "hard" or "continue"
    seed: int | None = None  # None: storyboard seed + shot index
    style: str | None = None  # overrides the world's style
    negative_prompt: str = ""
    image: Any = None  # a first frame for this shot (a path, or uint8 [H, W, 3] from a data URL), not a hard start
    line: int | None = None  # where the shot is written, for messages


@dataclass(frozen=True)
class World:
    """What every shot shares. Characters are ``(name, description)``; a nameless one is in every shot."""

    setting: str = ""
    characters: tuple[tuple[str, str], ...] = ()
    style: str | None = None


@dataclass(frozen=True)
class Storyboard:
    shots: tuple[Shot, ...]
    world: World = World()
    title: str = ""
    seed: int = 0  # storyboards are reproducible by default: another seed is another take
    seconds: float | None = None  # default shot length; None: the backend's default clip length
    negative_prompt: str = ""
    backend: str = DEFAULT_BACKEND
    model: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    steps: int | None = None
    guidance: float | None = None
    tier: str = DEFAULT_TIER  # quality tier of every shot (kinema.tiers.TIERS)
    audio: bool = True
    source: str = "<storyboard>"

    def with_(self, **changes: Any) -> Storyboard:
        """A copy with ``changes``; ``None`` values are ignored (handy for optional CLI flags)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})
