"""schemathesis hooks for tests/test_schema_fuzz.py (loaded with SCHEMATHESIS_HOOKS=schema_hooks).

Some of what kinema's OpenAPI schema names cannot be written as JSON Schema: a first frame must be a real
picture, a storyboard's text is a small language of its own, a cameo recording must show one person's
face. The schema says so with a ``format`` or a part's ``contentType``; these strategies make real values
of them, so the fuzzer's valid requests are valid for the server too. Everything else comes from the schema.
"""

from __future__ import annotations

import base64
import io
import json
import re
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import schemathesis
from hypothesis import strategies as st


def _png(width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), colour, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


PICTURES = st.builds(
    _png,
    st.integers(16, 64),
    st.integers(16, 64),
    st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255)),
)
schemathesis.openapi.media_type("image/png", PICTURES)
schemathesis.openapi.format(
    "data-url", PICTURES.map(lambda png: "data:image/png;base64," + base64.b64encode(png).decode())
)

SHOT_LINE = re.compile(r"Shot [0-9]+ \(([0-9.]+)s\): (.+)")
WORDS = st.lists(st.sampled_from(["a", "red", "ball", "bounces", "on", "the", "floor", "rain", "night"]), min_size=1)
SHOT = st.tuples(st.sampled_from(["1", "2", "0.5"]), WORDS.map(" ".join))
schemathesis.openapi.format(
    "kinema-storyboard",
    st.lists(SHOT, min_size=1, max_size=3).map(
        lambda shots: "\n".join(f"Shot {n} ({seconds}s): {prompt}" for n, (seconds, prompt) in enumerate(shots, 1))
    ),
)


def _recording() -> bytes:
    """1.1 s of one face (scikit-image's astronaut, panned), as tests/test_cameos.py records it: the shortest a
    cameo takes, so that each one the fuzzer makes is quick to capture."""
    import cv2
    from skimage import data

    from kinema.media.files import write_mp4

    image = data.astronaut()
    frames = np.stack([cv2.resize(image[20 + i : 340 + i, 70 + i : 390 + i], (256, 256)) for i in range(0, 22, 2)])
    with tempfile.TemporaryDirectory() as folder:
        path = write_mp4(Path(folder) / "person.mp4", frames, Fraction(10))
        return Path(path).read_bytes()


schemathesis.openapi.media_type("video/mp4", st.just(_recording()))


def _voice() -> bytes:
    """3.2 seconds of a speech-like voice (15 harmonics of a gliding pitch, ~5 syllables a second)."""
    from kinema.media import speech

    rate = 24000
    t = np.arange(int(3.2 * rate)) / rate
    phase = 2 * np.pi * np.cumsum(130 + 20 * np.sin(2 * np.pi * 0.7 * t)) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 16))
    signal = 0.3 * voiced * np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None) ** 0.6 / np.abs(voiced).max()
    with tempfile.TemporaryDirectory() as folder:
        path = speech.write_wav(Path(folder) / "voice.wav", signal.astype(np.float32), rate)
        return Path(path).read_bytes()


schemathesis.openapi.media_type("audio/wav", st.just(_voice()))


# A model's own limits (how many frames it makes at once, how many pixels fit in memory) depend on the model and
# the machine, so the schema cannot state them; the server refuses past them with 400 limit_exceeded (see
# tests/test_limits.py). Valid requests here stay well inside what the default tiny model makes.
# The same for steps (100 for every backend kinema has; the schema's 500 leaves room for plugins') and cameos (tiny
# and ltx2 put one in a clip, wan-vace up to four, the schema's limit).
MAX_TRIED_SECONDS, MAX_TRIED_FPS, MAX_TRIED_SIDE, MAX_TRIED_STEPS, MAX_TRIED_CAMEOS = 4.0, 30.0, 512, 100, 1


def _within_tiny(body: dict) -> bool:
    seconds = [body.get("seconds")]
    board = body.get("storyboard")
    if isinstance(board, dict) and isinstance(board.get("shots"), list):
        seconds += [shot.get("seconds") for shot in board["shots"] if isinstance(shot, dict)]
    for value in seconds:
        try:
            if value is not None and float(value) > MAX_TRIED_SECONDS:
                return False
        except (TypeError, ValueError):
            pass
    cameos = body.get("cameos")
    names = set(cameos.split(",") if isinstance(cameos, str) else cameos if isinstance(cameos, list) else [])
    if len({str(name).strip() for name in names} | ({body["speech"]} if body.get("speech") else set())) > 1:
        return False
    fps, size, steps = body.get("fps"), body.get("size"), body.get("steps")
    if isinstance(fps, (int, float)) and fps > MAX_TRIED_FPS:
        return False
    if isinstance(steps, (int, float)) and steps > MAX_TRIED_STEPS:
        return False
    if isinstance(size, str):
        sides = [int(part) for part in size.lower().replace("\u00d7", "x").split("x") if part.isdigit()]
        if any(side > MAX_TRIED_SIDE for side in sides):
            return False
    return True


@schemathesis.hook
def map_case(context, case):
    """A storyboard's text is in the language its ``format`` names, which the text's strategy above cannot see:
    its shot lines become the same shots as JSON (which YAML reads too) when ``format`` is yaml or json."""
    body = case.body
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or not isinstance(body, dict):
        return case
    text = body.get("storyboard")
    if body.get("format") in ("yaml", "json") and isinstance(text, str):
        shots = [SHOT_LINE.fullmatch(line) for line in text.splitlines()]
        if shots and all(shots):
            body["storyboard"] = json.dumps({"shots": [{"seconds": float(m[1]), "prompt": m[2]} for m in shots if m]})
    return case


# A schemathesis 4.32 quirk: its coverage phase sends one "positive" multipart body built from the media type
# strategies above with every other required field set to '' (specs/openapi/coverage/_operation.py,
# _generate_multipart_body_from_custom_strategies), which the schema itself forbids (a prompt has minLength 1, a
# cameo's name a pattern). The fuzzing phase sends real multipart bodies, valid field by field, instead.
QUIRK_MULTIPART = "Multipart body with custom encoding"


@schemathesis.hook
def filter_case(context, case) -> bool:
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return True
    if getattr(meta.phase.data, "description", None) == QUIRK_MULTIPART:
        return False
    body = getattr(case.body, "body", case.body)  # a multipart body with its parts' content types
    return not isinstance(body, dict) or _within_tiny(body)
