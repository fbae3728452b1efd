"""What cameos cost: capture time by stage, and consent checks against the generation they guard.

Builds a 4 s, 640x480, 24 fps recording of scikit-image's astronaut photo with
a synthesised voice (needs the test extra: scikit-image), then:

* capture: decoding the sampled frames alone (the baseline), face detection,
  and the whole capture (tracking, crops, voice), each as a ratio to decoding;
* consent: the checks a generation runs (``prepare`` before, ``recheck`` and
  ``finish`` after: signature, file hashes, use log) as a share of a plain
  tiny-LTX-2 generation measured in the same run, interleaved.

    python benchmarks/cameo_costs.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def median_time(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="kinema-bench-")
    os.environ["KINEMA_HOME"] = home
    os.environ.setdefault("KINEMA_LOAD_PLUGINS", "")

    import cv2
    from skimage import data
    from test_cameos import synth_voice

    import kinema
    from kinema import GenerationRequest
    from kinema.cameo import store as cameos
    from kinema.cameo.capture import SAMPLED_FRAMES, _sample_frames, capture
    from kinema.cameo.face import HaarDetector
    from kinema.media.files import write_mp4

    photo = data.astronaut()
    frames = []
    for i in range(96):  # 4 s at 24 fps, a slow pan and zoom
        u = i / 95
        side = int(300 + 80 * u)
        x0, y0 = int(70 + 40 * u), int(10 + 20 * u)
        crop = photo[y0 : y0 + side, x0 : x0 + side]
        frames.append(cv2.resize(crop, (480, 480), interpolation=cv2.INTER_AREA))
    canvas = np.stack([np.pad(f, ((0, 0), (80, 80), (0, 0)), mode="edge") for f in frames])
    video = write_mp4(Path(home) / "person.mp4", canvas, Fraction(24), synth_voice(4.0)[None], 24000)

    detector = HaarDetector()
    decode = median_time(lambda: _sample_frames(video, SAMPLED_FRAMES), args.runs)
    sampled, _ = _sample_frames(video, SAMPLED_FRAMES)
    detect = median_time(lambda: [detector.detect(image) for _, image in sampled], args.runs)
    whole = median_time(lambda: capture(video, embedder=None, detector=detector), args.runs)
    print(f"capture of a 4 s 640x480 recording ({len(sampled)} frames sampled), median of {args.runs}")
    print(f"{'stage':<28}{'seconds':>10}{'x decode':>10}")
    for name, seconds in (("decode sampled frames", decode), ("detect faces (Haar)", detect), ("whole capture", whole)):
        print(f"{name:<28}{seconds:>10.3f}{seconds / decode:>10.1f}")

    store = cameos.CameoStore()
    store.create("astro", "bench", capture(video, embedder=None, detector=detector))
    request = GenerationRequest("astro on a beach", width=64, height=64, seconds=1.0, fps=24, steps=8, seed=3)
    with_cameo = request.with_(cameos=("astro",), user="bench")
    kinema.generate(request)  # build and load the tiny model once

    def checks() -> None:
        conditioning = cameos.prepare(with_cameo)
        cameos.recheck(with_cameo, conditioning)
        clip = kinema.Clip(np.zeros((9, 64, 64, 3), np.uint8), Fraction(24))
        cameos.finish(with_cameo, clip, conditioning)

    generation, consent = [], []
    for _ in range(args.runs):  # interleaved, so load drift hits both alike
        generation.append(median_time(lambda: kinema.generate(request), 1))
        consent.append(median_time(checks, 1))
    g, c = statistics.median(generation), statistics.median(consent)
    print()
    print(f"consent checks per generation (tiny LTX-2, 64x64, 25 frames, 8 steps), median of {args.runs}")
    print(f"{'':<28}{'seconds':>10}{'share':>10}")
    print(f"{'plain generation':<28}{g:>10.3f}{1:>10.1%}")
    print(f"{'consent checks':<28}{c:>10.4f}{c / g:>10.1%}")


if __name__ == "__main__":
    main()
