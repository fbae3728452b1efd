"""The demo world's evaluation: does the trained model follow the prompt, obey gravity and sound on every bounce?

Fixed prompts and seeds (``kinema.world.evaluate.cases``): ``--seen`` cases from the training combinations
and ``--held-out`` cases from the four colour x wall pairs training never saw. Three rows, each made through
kinema's own paths (``kinema.generate``, ``kinema.extend.extend``, storyboards) and measured from pixels
and samples only (``kinema.world.detect``):

* ``world renders``: the world itself, what a perfect model would make. The detectors must score >= 98 %
  here on colour, size, wall, floor and physics before any model figure counts; the table says if not.
* ``trained``: the shipped model (``KINEMA_WORLD_MODEL`` or ``--model`` points at another assembled folder).
* ``random weights``: the same architecture with random weights: what the figures mean by chance.

Every figure has its 95 % interval (Wilson for shares, bootstrap for the median offset, t for means).
Speed and memory are printed, never asserted: seconds per default clip once the model is loaded (threads as
given) and the process's peak RSS.

    python benchmarks/world_eval.py                       # the issue's size: 100 seen, 40 held out
    python benchmarks/world_eval.py --seen 30 --held-out 10 --conditioning 5 --rows trained
    python benchmarks/world_eval.py --json eval.json      # every clip's record too
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

from kinema.world import evaluate as E

ROWS = ("renders", "trained", "random")
GATE = 0.98  # the detectors' minimum on the world's own renders
GATED = ("colour", "size", "wall", "floor", "physics")
DEFAULT_PROMPT = "a small red ball bounces on a wooden floor in a room with blue walls"


def _backend(row: str, model: Path | None):
    from kinema.backends.world import WorldBackend

    if row == "trained":
        if model is not None:
            os.environ["KINEMA_WORLD_MODEL"] = str(model)
        return WorldBackend()
    from kinema.world.captions import VOCABULARY
    from kinema.world.model import components

    return WorldBackend(components=components(tuple(sorted(VOCABULARY))))  # random init, offline


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def speed(backend, threads: int, runs: int = 3) -> dict:
    """Seconds to make the default clip once the model is loaded (the first call loads and is not counted)."""
    import torch

    from kinema import generate
    from kinema.request import GenerationRequest

    torch.set_num_threads(threads)
    request = GenerationRequest(DEFAULT_PROMPT, seed=0, backend=backend.name)
    generate(request, backend=backend)  # load
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        generate(request, backend=backend)
        times.append(time.perf_counter() - started)
    return {"threads": threads, "seconds": sorted(times)[len(times) // 2], "peak_rss_mb": _peak_rss_mb()}


def gate_failures(renders: E.RowResult) -> list[str]:
    figures = renders.figures()
    return [f"{k} {100 * figures[k][0]:.0f} %" for k in GATED if figures[k][0] < GATE]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seen", type=int, default=100)
    parser.add_argument("--held-out", type=int, default=40)
    parser.add_argument("--conditioning", type=int, default=20, help="seen cases for i2v, extend and storyboard")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of {', '.join(ROWS)}")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the backend's)")
    parser.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the backend's)")
    parser.add_argument("--threads", type=int, default=max(1, min(2, os.cpu_count() or 1)))
    parser.add_argument("--model", type=Path, default=None, help="an assembled pipeline folder for the trained row")
    parser.add_argument("--json", type=Path, default=None, help="write every clip's record here")
    args = parser.parse_args(argv)
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    if unknown := sorted(set(rows) - set(ROWS)):
        parser.error(f"unknown rows {unknown}; choose from {', '.join(ROWS)}")

    import torch

    torch.set_num_threads(args.threads)
    chosen = E.cases(args.seen, args.held_out)
    say = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    results, speeds = [], {}
    for row in rows:
        started = time.perf_counter()
        if row == "renders":
            source = E.RenderSource()
        else:
            backend = _backend(row, args.model)
            source = E.KinemaSource(
                "trained" if row == "trained" else "random weights", backend, steps=args.steps, guidance=args.guidance
            )
            speeds[source.name] = speed(backend, args.threads)
        results.append(E.evaluate(source, chosen, conditioning=args.conditioning, say=say))
        say(f"{row}: {time.perf_counter() - started:.0f} s")

    print(
        f"# The demo world: {args.seen} seen and {args.held_out} held-out prompts, {args.conditioning} of each "
        f"conditioning check; 95 % intervals in brackets\n"
    )
    renders = next((r for r in results if r.name == E.RenderSource.name), None)
    if renders is not None and (failed := gate_failures(renders)):
        print(
            f"**The detectors score below {GATE:.0%} on the world's own renders ({', '.join(failed)}): "
            "the model figures below do not count.**\n"
        )
    for which, title in (("seen", "Seen combinations"), ("held_out", "Held-out colour x wall pairs")):
        print(E.table([E.split(r, which) for r in results], title))
        print()
    if speeds:
        print("| speed | threads | s per default clip (loaded) | peak RSS MB |")
        print("|---|---|---|---|")
        for name, s in speeds.items():
            print(f"| {name} | {s['threads']} | {s['seconds']:.2f} | {s['peak_rss_mb']:.0f} |")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "rows": [r.__dict__ for r in results],
                    "speed": speeds,
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
