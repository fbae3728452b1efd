"""Captions for the demo world: varied wording over a small, closed vocabulary.

The model has to learn what the words mean, not one sentence shape, so captions vary word order,
synonyms and optional words; but every caption names all four things a clip is judged on (ball colour,
ball size, wall colour, floor). The vocabulary is closed and listed (`VOCABULARY`) so that prompts with
other words can be flagged, and `caption_attributes` reads the four things back from any prompt.
"""

from __future__ import annotations

import re

import numpy as np

from kinema.world.scene import COLOURS, FLOORS, SIZES, WALLS, Scene

SIZE_WORDS = {"small": ("small", "little"), "large": ("large", "big")}
NOUNS = ("ball", "sphere")
WALL_WORDS = {"white": ("white",), "grey": ("grey", "gray"), "pink": ("pink",), "mint": ("mint",)}
FLOOR_ADJ = {"wood": ("wooden", "wood"), "tiles": ("tiled", "tile")}
FLOOR_NOUNS = {
    "wood": ("wooden floor", "wood floor", "floor of wood"),
    "tiles": ("tiled floor", "tile floor", "floor of tiles"),
}
VERBS = {  # (finite verb phrase with a following "onto"/"on" place, intransitive phrase)
    False: (
        ("drops onto", "drops"),
        ("falls onto", "falls and bounces"),
        ("bounces on", "bounces"),
        ("is dropped onto", "is dropped and bounces"),
    ),
    True: (
        ("is tossed onto", "is tossed and bounces"),
        ("is thrown onto", "is thrown and bounces"),
        ("bounces on", "bounces"),
    ),
}
ENDINGS = ("", "", " until it rests", " and comes to rest")


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def caption(scene: Scene, rng: np.random.Generator) -> str:
    """One caption for the scene, drawn from the templates with rng."""
    size = _pick(rng, SIZE_WORDS[scene.size])
    noun = _pick(rng, NOUNS)
    wall = _pick(rng, WALL_WORDS[scene.wall])
    colour = scene.colour
    floor_adj = _pick(rng, FLOOR_ADJ[scene.floor])
    floor_np = _pick(rng, FLOOR_NOUNS[scene.floor])
    verb_to, verb_in = _pick(rng, VERBS[scene.tossed])
    ending = _pick(rng, ENDINGS)
    article = _pick(rng, ("a", "the"))
    ball = f"{size} {colour} {noun}"
    room = _pick(rng, (f"a {wall} room", f"a room with {wall} walls"))
    room_floor = _pick(
        rng, (f"a {wall} room with a {floor_adj} floor", f"a room with {wall} walls and a {floor_adj} floor")
    )
    templates = (
        f"{article} {ball} {verb_to} a {floor_np} in {room}{ending}",
        f"in {room_floor}, {article} {ball} {verb_in}{ending}",
        f"{room_floor}: {article} {ball} {verb_in}{ending}",
        f"{article} {ball} {verb_in} on the {floor_adj} floor of {room}{ending}",
        f"{size} {colour} {noun}, {wall} walls, {floor_adj} floor",
        f"on a {floor_np}, in {room}, {article} {ball} {verb_in}{ending}",
    )
    return re.sub(r"\s+", " ", _pick(rng, templates)).strip()


def words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def _vocabulary() -> frozenset:
    pieces = ["a the in with of on onto room walls floor until it rests and comes to rest"]
    pieces += list(COLOURS) + list(NOUNS)
    for table in (SIZE_WORDS, WALL_WORDS, FLOOR_ADJ, FLOOR_NOUNS):
        for options in table.values():
            pieces += list(options)
    for pairs in VERBS.values():
        for a, b in pairs:
            pieces += [a, b]
    pieces += list(ENDINGS)
    return frozenset(w for p in pieces for w in words(p))


VOCABULARY = _vocabulary()


def unknown_words(text: str) -> list[str]:
    """Words of text outside VOCABULARY, in order of first appearance."""
    seen = []
    for w in words(text):
        if w not in VOCABULARY and w not in seen:
            seen.append(w)
    return seen


def caption_attributes(text: str) -> dict:
    """The colour, size, wall and floor a prompt names (None for each it does not name)."""
    ws = words(text)
    out: dict[str, str | None] = {"colour": None, "size": None, "wall": None, "floor": None}
    for w in ws:
        if w in COLOURS and out["colour"] is None:
            out["colour"] = w
        for key, table in (("size", SIZE_WORDS), ("wall", WALL_WORDS), ("floor", FLOOR_ADJ)):
            for name, options in table.items():
                if w in options and out[key] is None:
                    out[key] = name
        if w in ("tiles",) and out["floor"] is None:
            out["floor"] = "tiles"
    return out


assert set(SIZE_WORDS) == set(SIZES) and set(WALL_WORDS) == set(WALLS) and set(FLOOR_ADJ) == set(FLOORS)
