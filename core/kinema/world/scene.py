"""What can vary between clips of the demo world, and how scenes are drawn at random.

Everything a clip shows or sounds like follows from one `Scene`, so a scene (plus a start time) is the
whole recipe: the renderer, the physics and the captions read it, and the detectors are judged against
it. The held-out colour x wall pairs live here so that every user of the world (training data, the
evaluation, the tests) agrees on which combinations the model never saw.

Coordinates are *reference pixels*: a 64-px-high, 64-px-wide room, x to the right, y DOWN (image
convention). The camera scales them to the rendered size (see render.py), so a scene looks the same
at any resolution.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

COLOURS = ("red", "orange", "yellow", "green", "blue", "purple")
SIZES = ("small", "large")
# Pale or neutral, so a wall can never be mistaken for a (saturated) ball: two neutrals apart in
# lightness, two pastels apart in hue (pink ~ red-ish, mint ~ green-ish).
WALLS = ("white", "grey", "pink", "mint")
FLOORS = ("wood", "tiles")

# Never drawn for split="train": four different ball colours, each wall once.
HELD_OUT = frozenset({("red", "mint"), ("yellow", "grey"), ("green", "pink"), ("purple", "white")})

# --- the room, in reference pixels (64 x 64) ---------------------------------------------------------
REF_HEIGHT = 64.0
REF_WIDTH = 64.0
FLOOR_TOP = 48.0  # where wall meets floor: the floor is the bottom quarter of the picture
CONTACT_Y = 58.0  # the image row the ball's bottom touches when it is on the floor (mid-depth of the floor)
RADII = {"small": 4.0, "large": 7.0}
GRAVITY = 280.0  # px/s^2, one gravity for every clip (a 34 px drop lands in ~0.49 s)

# --- sampling ranges -----------------------------------------------------------------------------------
DROP_HEIGHT = (28.0, 40.0)  # px the ball's centre falls before the first contact (if dropped from rest)
TOSS_VX = (8.0, 18.0)  # |horizontal speed|, px/s, for tossed balls (always towards the room's middle)
TOSS_VY = (0.0, 30.0)  # upward speed, px/s, for tossed balls
TOSS_SHARE = 0.5


@dataclass(frozen=True)
class Scene:
    """One clip's world. Positions and speeds in reference pixels (see module docstring); vy0 < 0 is up."""

    colour: str
    size: str
    wall: str
    floor: str
    x0: float
    y0: float
    vx0: float = 0.0
    vy0: float = 0.0
    seed: int = 0

    def __post_init__(self):
        for name, value, allowed in (
            ("colour", self.colour, COLOURS),
            ("size", self.size, SIZES),
            ("wall", self.wall, WALLS),
            ("floor", self.floor, FLOORS),
        ):
            if value not in allowed:
                raise ValueError(f"unknown {name} {value!r}; one of {', '.join(allowed)}")

    @property
    def radius(self) -> float:
        return RADII[self.size]

    @property
    def tossed(self) -> bool:
        return self.vx0 != 0.0 or self.vy0 != 0.0

    @property
    def held_out(self) -> bool:
        return (self.colour, self.wall) in HELD_OUT

    def to_dict(self) -> dict:
        return asdict(self)


TRAIN_PAIRS = tuple((c, w) for c in COLOURS for w in WALLS if (c, w) not in HELD_OUT)
HELD_OUT_PAIRS = tuple(sorted(HELD_OUT))
ALL_PAIRS = tuple((c, w) for c in COLOURS for w in WALLS)


def sample_scene(rng: np.random.Generator, *, split: str = "train", tossed: bool | None = None) -> Scene:
    """A random scene. split: "train" never draws a HELD_OUT (colour, wall) pair, "held_out" draws only
    those, "any" draws from all. tossed: force a tossed (True) or dropped (False) ball; None: either."""
    pairs = {"train": TRAIN_PAIRS, "held_out": HELD_OUT_PAIRS, "any": ALL_PAIRS}.get(split)
    if pairs is None:
        raise ValueError(f"split must be 'train', 'held_out' or 'any', not {split!r}")
    colour, wall = pairs[int(rng.integers(len(pairs)))]
    size = SIZES[int(rng.integers(len(SIZES)))]
    floor = FLOORS[int(rng.integers(len(FLOORS)))]
    r = RADII[size]
    if tossed is None:
        tossed = bool(rng.random() < TOSS_SHARE)
    height = float(rng.uniform(*DROP_HEIGHT))
    y0 = CONTACT_Y - r - height
    vx0 = vy0 = 0.0
    if tossed:
        vy0 = -float(rng.uniform(*TOSS_VY))
        x0 = float(rng.uniform(14.0, 28.0))
        vx0 = float(rng.uniform(*TOSS_VX))
        if rng.random() < 0.5:  # mirror: start on the right, move left
            x0, vx0 = REF_WIDTH - x0, -vx0
        # keep the top of the ball in the picture at the apex of the toss
        apex = y0 - vy0 * vy0 / (2 * GRAVITY)
        if apex - r < 2.0:
            y0 += 2.0 - (apex - r)
    else:
        x0 = float(rng.uniform(14.0, 50.0))
    seed = int(rng.integers(2**31 - 1))
    return Scene(
        colour=colour,
        size=size,
        wall=wall,
        floor=floor,
        x0=round(x0, 3),
        y0=round(y0, 3),
        vx0=round(vx0, 3),
        vy0=round(vy0, 3),
        seed=seed,
    )
