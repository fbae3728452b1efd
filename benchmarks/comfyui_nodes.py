"""What the ComfyUI nodes and step previews cost on top of kinema.generate.

Three ways, interleaved so drift in machine load hits all alike, on the
embedded tiny LTX-2 and Wan (CPU, same seed, size and steps):

- engine:   kinema.generate(request)
- previews: kinema.generate(request, preview=True)   (a latent->RGB picture every step)
- node:     the Kinema Generate node's logic (ComfyUI tensors in and out), previews on

The one-time preview calibration (one small VAE encode per loaded VAE) is
timed separately, on a freshly loaded pipeline.

    python benchmarks/comfyui_nodes.py [--runs 5]
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import kinema
from kinema import GenerationRequest

NODE_FOLDER = Path(__file__).resolve().parent.parent / "plugins" / "comfyui"
REQUEST = dict(prompt="a red fox running through snow", width=64, height=64, seconds=1.0, fps=24, steps=8, seed=11)


def node_logic():
    name = str(NODE_FOLDER).replace(".", "_x_")
    spec = importlib.util.spec_from_file_location(name, NODE_FOLDER / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module.logic


class PreviewHost:
    previews = True

    def __init__(self, logic):
        self._null = logic.NullHost()

    def __getattr__(self, name):
        return getattr(self._null, name)


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    logic = node_logic()

    rows = []
    for backend in ("tiny", "tiny-wan"):
        request = GenerationRequest(backend=backend, **REQUEST)
        handle = logic.load_model(backend)
        host = PreviewHost(logic)
        node_arguments = {k: v for k, v in REQUEST.items() if k != "prompt"}
        kinema.generate(request)  # load weights once, outside the timings
        # partial binds this iteration's request, handle and host (a lambda would read the loop variables late).
        previews = functools.partial(kinema.generate, request, preview=True)
        calibration = timed(previews)  # first preview run: includes calibration
        calibration -= timed(previews)
        ways = {
            "engine": functools.partial(kinema.generate, request),
            "previews": previews,
            "node": functools.partial(logic.generate, handle, REQUEST["prompt"], host=host, **node_arguments),
        }
        times = {name: [] for name in ways}
        for _ in range(args.runs):
            for name, way in ways.items():
                times[name].append(timed(way))
        base = statistics.median(times["engine"])
        rows.append(
            (
                backend,
                base,
                statistics.median(times["previews"]),
                statistics.median(times["node"]),
                max(calibration, 0.0),
            )
        )

    steps = REQUEST["steps"]
    print(
        f"tiny models, {REQUEST['width']}x{REQUEST['height']}, {REQUEST['seconds']:g} s, {steps} steps,"
        f" median of {args.runs} runs (CPU)"
    )
    print(
        f"{'backend':<10}{'engine s':>10}{'previews s':>12}{'ratio':>8}{'node s':>9}{'ratio':>8}{'calibration s':>15}"
    )
    for backend, base, previews, node, calibration in rows:
        print(
            f"{backend:<10}{base:>10.3f}{previews:>12.3f}{previews / base:>8.2f}{node:>9.3f}{node / base:>8.2f}"
            f"{calibration:>15.3f}"
        )


if __name__ == "__main__":
    main()
