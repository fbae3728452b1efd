"""What the shot cache saves when a storyboard is edited, and what assembling a film costs.

A 4-shot storyboard (hard, hard, continue, hard) on the embedded tiny LTX-2:
made from scratch, made again unchanged (every shot cached), and made after
editing shot 2 (shots 2 and 3 remade). Also the cost of the frame-exact
trimming and crossfaded join against the shots' own generation time. Each
case runs ``--runs`` times in a fresh data directory; medians are shown, with
the ratio to the from-scratch run measured in the same process.

    python benchmarks/storyboard_cache.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

BOARD = """Size: 64x64
Steps: 8
Shot 1 (1s): a lake at dawn, birds singing
Shot 2 (1s): a {boat} on the water, oars splashing
Shot 3 (1s, continue): the boat drifts past reeds
Shot 4 (1s): a lighthouse on the shore, waves
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs

    from kinema.media.assemble import Piece, join
    from kinema.storyboard import parse_storyboard, run_storyboard

    os.environ.setdefault("KINEMA_LOAD_PLUGINS", "")
    original = os.environ.get("KINEMA_HOME")
    models = os.path.join(original or tempfile.gettempdir(), "models")
    times: dict[str, list[float]] = {
        "from scratch": [],
        "unchanged (all cached)": [],
        "shot 2 edited": [],
        "join only": [],
    }
    remade: dict[str, list[int]] = {}
    for run in range(runs + 1):  # run 0 warms up (builds the tiny model, loads the pipeline)
        with tempfile.TemporaryDirectory() as home:
            os.makedirs(models, exist_ok=True)
            os.symlink(models, os.path.join(home, "models"))
            os.environ["KINEMA_HOME"] = home
            for case, text in (
                ("from scratch", BOARD.format(boat="boat")),
                ("unchanged (all cached)", BOARD.format(boat="boat")),
                ("shot 2 edited", BOARD.format(boat="red boat")),
            ):
                started = time.perf_counter()
                result = run_storyboard(parse_storyboard(text))
                if run:
                    times[case].append(time.perf_counter() - started)
                    remade[case] = result.regenerated
            pieces = [
                Piece(r.clip.frames, r.generated.audio, round(r.plan.head * r.generated.sample_rate / r.plan.fps))
                for r in result.shots
            ]
            started = time.perf_counter()
            join(pieces, result.film.fps, result.film.sample_rate)
            if run:
                times["join only"].append(time.perf_counter() - started)
    if original is not None:
        os.environ["KINEMA_HOME"] = original
    base = statistics.median(times["from scratch"])
    print(f"4-shot storyboard, tiny LTX-2 64x64, 8 steps, 4 s of film; median of {runs} runs")
    print(f"{'case':<26} {'seconds':>9} {'vs scratch':>11}  shots made")
    for case, values in times.items():
        median = statistics.median(values)
        made = ", ".join(map(str, remade.get(case, []))) or ("-" if case == "join only" else "none")
        print(f"{case:<26} {median:>9.3f} {median / base:>10.1%}  {made}")


if __name__ == "__main__":
    main()
