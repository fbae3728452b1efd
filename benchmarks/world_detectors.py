"""How well the demo world's detectors read clips back: the gate before any model figure counts.

Issue 15 asks the detectors (kinema.world.detect: pixels and samples only, never the truth) to score
>= 98 % on the world's own renders. This renders N random scenes, measures each, and prints one table:
ball colour, size, wall, floor, the physics check, contacts with an audio onset within +-1 frame, onsets
with no contact, and the median |onset - contact|; each share with its 95 % Wilson interval.

A second row, "degraded", measures the same clips after a blur, noise, a colour cast, a temporal smear
and a duller, noisier sound: a rough stand-in for a model's output, to show the instruments do not
depend on the renderer's exact pixels (it has no target; it is there to catch brittle detectors).

    python benchmarks/world_detectors.py [--n 300] [--seed 0] [--split any|train|held_out] [--no-degraded]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from kinema.world import render, sample_scene
from kinema.world.detect import detect_clip, physics_report, sync_report


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    d = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, centre - half), min(1.0, centre + half)


def _blur(frames: np.ndarray, sigma: float) -> np.ndarray:
    r = int(3 * sigma) + 1
    x = np.arange(-r, r + 1)
    k = np.exp(-x * x / (2 * sigma * sigma))
    k /= k.sum()
    f = frames.astype(np.float64)
    pad = np.pad(f, ((0, 0), (r, r), (r, r), (0, 0)), mode="edge")
    rows = sum(k[i] * pad[:, i : i + f.shape[1], :, :] for i in range(len(k)))
    return sum(k[i] * rows[:, :, i : i + f.shape[2], :] for i in range(len(k)))


def degrade(frames: np.ndarray, audio: np.ndarray, rng: np.random.Generator):
    f = _blur(frames, 1.2)
    smeared = f.copy()
    smeared[1:-1] = 0.7 * f[1:-1] + 0.15 * (f[:-2] + f[2:])  # a little of each neighbouring frame
    f = smeared + rng.normal(0, 6, f.shape) + rng.normal(0, 8, 3)  # noise and a colour cast
    a = np.convolve(audio.astype(np.float64), np.ones(4) / 4, mode="same") + rng.normal(0, 0.003, len(audio))
    return np.clip(np.round(f), 0, 255).astype(np.uint8), np.clip(a, -1, 1).astype(np.float32)


class Tally:
    KEYS = ("colour", "size", "wall", "floor", "physics")

    def __init__(self):
        self.right = dict.fromkeys(self.KEYS, 0)
        self.clips = 0
        self.contacts = self.with_onset = self.onsets = self.lonely = 0
        self.offsets: list[float] = []

    def add(self, scene, clip, frames, audio):
        m = detect_clip(frames, audio, clip.fps, clip.sample_rate)
        self.clips += 1
        for key in self.KEYS[:4]:
            self.right[key] += getattr(m, key) == getattr(scene, key)
        self.right["physics"] += physics_report(m)["passed"]
        sync = sync_report(m.contact_times, m.onsets, clip.fps)
        self.contacts += sync["contacts"]
        self.with_onset += round(sync["contacts_with_onset"] * sync["contacts"])
        self.onsets += sync["onsets"]
        self.lonely += round(sync["onsets_without_contact"] * sync["onsets"])
        self.offsets += [abs(o) for o in sync["offsets_ms"]]

    def cells(self) -> list[str]:
        def share(k, n):
            lo, hi = wilson(k, n)
            return f"{100 * k / n:5.1f} [{100 * lo:4.1f}-{100 * hi:5.1f}]" if n else "n/a"

        out = [share(self.right[k], self.clips) for k in self.KEYS]
        out += [
            share(self.with_onset, self.contacts),
            share(self.lonely, self.onsets),
            f"{np.median(self.offsets):.2f}" if self.offsets else "n/a",
        ]
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", default="any", choices=("any", "train", "held_out"))
    ap.add_argument("--no-degraded", action="store_true")
    args = ap.parse_args()

    rng = np.random.default_rng(args.seed)
    noise = np.random.default_rng(args.seed + 1)
    rows = {"renders": Tally()}
    if not args.no_degraded:
        rows["degraded"] = Tally()
    start = time.perf_counter()
    for _ in range(args.n):
        scene = sample_scene(rng, split=args.split)
        clip = render(scene)
        rows["renders"].add(scene, clip, clip.frames, clip.audio)
        if "degraded" in rows:
            rows["degraded"].add(scene, clip, *degrade(clip.frames, clip.audio, noise))
    elapsed = time.perf_counter() - start

    heads = ["", "colour", "size", "wall", "floor", "physics", "contact+onset", "onset, no contact", "median |off| ms"]
    table = [[name] + t.cells() for name, t in rows.items()]
    widths = [max(len(r[i]) for r in [heads] + table) for i in range(len(heads))]
    print(
        f"{args.n} scenes (split {args.split}, seed {args.seed}), 64x64, 12 fps, 25 frames, 16 kHz;"
        f" % with 95 % Wilson intervals; {elapsed:.1f} s"
    )
    for r in [heads] + table:
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    t = rows["renders"]
    print(f"contacts {t.contacts}, onsets {t.onsets} (renders)")


if __name__ == "__main__":
    main()
