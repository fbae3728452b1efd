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
the audio crossfades at the cuts overlap (see ``kinema.media.assemble``).

The rooms: ``model`` (``Storyboard``, ``Shot``, ``World``, ``Line``), ``read``
(``load_storyboard``, ``parse_storyboard``), ``parse`` (YAML, JSON and shot lines
to plain data), ``check`` (``from_dict``: that data to a checked ``Storyboard``),
``plan`` (``plan_storyboard``), ``run`` (``run_storyboard``) and ``cache``
(``ShotCache``); their public names are re-exported here. Beside the engine: may
import the engine's modules at the top of ``kinema``, ``kinema.media`` and
``kinema.cameo``; never the server or the hosts.
"""

from kinema.storyboard.cache import ShotCache, cache_key
from kinema.storyboard.check import from_dict
from kinema.storyboard.model import (
    CUTS,
    MAX_SHOTS,
    STRUCTURED_SUFFIXES,
    TEXT_SUFFIXES,
    Line,
    Shot,
    Storyboard,
    StoryboardError,
    World,
)
from kinema.storyboard.plan import ShotPlan, compose_prompt, plan_storyboard, shot_request
from kinema.storyboard.read import load_storyboard, parse_storyboard
from kinema.storyboard.run import ShotResult, StoryboardResult, run_storyboard

__all__ = [
    "CUTS",
    "MAX_SHOTS",
    "STRUCTURED_SUFFIXES",
    "TEXT_SUFFIXES",
    "Line",
    "Shot",
    "ShotCache",
    "ShotPlan",
    "ShotResult",
    "Storyboard",
    "StoryboardError",
    "StoryboardResult",
    "World",
    "cache_key",
    "compose_prompt",
    "from_dict",
    "load_storyboard",
    "parse_storyboard",
    "plan_storyboard",
    "run_storyboard",
    "shot_request",
]
