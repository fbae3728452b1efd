"""The README's picture of the demo world: frames of one clip side by side, its sound beneath, the bounces marked.

Makes the clip through ``kinema.generate`` exactly as README command 1 does (same prompt, the default seed),
then draws every ``--every``-th frame (scaled up without smoothing, so the 64x64 pixels stay visible) over the
clip's waveform, with a tick where the ball meets the floor (measured from the pixels by
``kinema.world.detect``) and where the sound has an onset. A quick look at what the evaluation measures.

    python benchmarks/world_strip.py                      # writes docs/images/world_strip.png
    python benchmarks/world_strip.py --prompt "..." --out strip.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from kinema import generate
from kinema.request import GenerationRequest
from kinema.world import evaluate as E

README_PROMPT = "a big red ball drops onto a wooden floor in a room with pink walls"
ROOT = Path(__file__).resolve().parents[1]


def strip(frames: np.ndarray, audio: np.ndarray, fps: float, rate: int, contacts, onsets, every: int, scale: int):
    picked = list(range(0, len(frames), every))
    side = frames.shape[1] * scale
    gap = 4
    width = len(picked) * (side + gap) - gap
    wave_height = 60
    image = Image.new("RGB", (width, side + gap + wave_height + 14), "white")
    for i, index in enumerate(picked):
        tile = Image.fromarray(frames[index]).resize((side, side), Image.Resampling.NEAREST)
        image.paste(tile, (i * (side + gap), 0))
    draw = ImageDraw.Draw(image)
    for i, index in enumerate(picked):
        draw.text((i * (side + gap) + 3, 2), f"{index / fps:.2f}s", fill="white")
    top = side + gap
    seconds = len(frames) / fps
    # The waveform as its envelope per pixel column: a bounce's click is a spike, the room tone a thin band.
    samples = np.abs(audio[: int(seconds * rate)])
    columns = np.array_split(samples, width)
    peak = max(float(samples.max()), 1e-6)
    middle = top + wave_height // 2
    for x, column in enumerate(columns):
        half = (float(column.max()) if len(column) else 0.0) / peak * (wave_height // 2 - 2)
        draw.line((x, middle - half, x, middle + half), fill=(70, 70, 70))
    for t in contacts:
        x = t / seconds * width
        draw.line((x, top, x, top + wave_height), fill=(220, 30, 30), width=2)
    for t in onsets:
        x = t / seconds * width
        draw.polygon(
            [(x - 4, top + wave_height + 2), (x + 4, top + wave_height + 2), (x, top + wave_height - 5)],
            fill=(30, 90, 220),
        )
    draw.text((2, top + wave_height + 2), "red: ball meets floor (pixels)   blue: sound onset (samples)", fill="black")
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompt", default=README_PROMPT)
    parser.add_argument("--backend", default="tiny")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--every", type=int, default=3, help="draw every Nth frame")
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "world_strip.png")
    args = parser.parse_args()
    clip = generate(GenerationRequest(args.prompt, backend=args.backend, seed=args.seed))
    made = E._made(clip, 0.0)
    measured = E.measure(made)
    image = strip(
        made.frames,
        made.audio,
        made.fps,
        made.sample_rate,
        measured.contact_times,
        measured.onsets,
        args.every,
        args.scale,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    image.save(args.out, optimize=True)
    print(
        f"{args.out}: {len(made.frames)} frames at {made.fps:g} fps, {len(measured.contact_times)} contacts, {len(measured.onsets)} onsets"
    )


if __name__ == "__main__":
    main()
