"""What the job server costs on top of calling the engine directly.

Measures, with the embedded tiny backend at a toy size (so the model's own time
is small and the overhead shows):

* submit -> first progress event (server-sent events, via kinema.client)
* submit -> completed event, vs ``generate()`` + ``clip.save()`` in-process
* the download of the finished MP4

Each row is the median of ``--runs`` jobs after one warm-up job, in one run of
this script (direct and served jobs alternate). Usage: python benchmarks/server_overhead.py [--runs 7] [--steps 4] [--threads 1]

Torch runs one thread by default on both sides: the toy model gains nothing
from more, and OpenMP's spinning threads make timings erratic on a busy machine.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZE, SECONDS = (32, 32), 0.4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="torch threads, for both the direct run and the server")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="kinema-bench-"))
    os.environ.update(
        {
            "KINEMA_HOME": str(home),
            "KINEMA_LOAD_PLUGINS": "",
            "KINEMA_DEVICE": "cpu",
            "OMP_NUM_THREADS": str(args.threads),
        }
    )
    os.environ.pop("KINEMA_API_KEY", None)
    try:
        direct, served = bench(args.runs, args.steps, home)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    report(direct, served, args)


def bench(runs: int, steps: int, home: Path) -> tuple[dict, dict]:
    """Direct and served jobs alternate, so both see the same machine load."""
    import torch

    from kinema import GenerationRequest, generate, get_backend
    from kinema.client import Client

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    backend = get_backend("tiny")  # one instance: weights stay loaded, as in the server's worker
    request = GenerationRequest("a benchmark", seconds=SECONDS, width=SIZE[0], height=SIZE[1], steps=steps, seed=1)
    direct: dict[str, list[float]] = {"first": [], "total": []}
    served: dict[str, list[float]] = {"first": [], "total": [], "download": []}

    def run_direct(record: bool) -> None:
        first: list[float] = []
        start = time.perf_counter()
        clip = generate(request, backend=backend, progress=lambda p: first or first.append(time.perf_counter()))
        clip.save(home / "direct.mp4")
        if record:
            direct["first"].append(first[0] - start)
            direct["total"].append(time.perf_counter() - start)

    def run_served(client: Client, record: bool) -> None:
        start = time.perf_counter()
        job = client.submit("a benchmark", size=f"{SIZE[0]}x{SIZE[1]}", seconds=SECONDS, steps=steps, seed=1)
        first = done = None
        for name, data in client.events(job["id"]):
            if name == "progress" and first is None:
                first = time.perf_counter()
            elif name == "completed":
                done = time.perf_counter()
            elif name in ("failed", "cancelled"):
                raise SystemExit(f"benchmark job failed: {data}")
        client.download(job["id"], home / "served.mp4")
        if record:
            served["first"].append(first - start)
            served["total"].append(done - start)
            served["download"].append(time.perf_counter() - done)

    run_direct(record=False)  # builds and loads the tiny model
    with open(home / "server.log", "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "kinema.cli", "serve", "--port", "0", "--log-level", "warning"],
            stdout=subprocess.PIPE,
            stderr=log,
        )
        try:
            line = server.stdout.readline().decode()
            match = re.search(r"(http://127\.0\.0\.1:\d+)", line)
            if not match:
                raise SystemExit(f"server did not start: {line}{(home / 'server.log').read_text()}")
            client = Client(match[1])
            run_served(client, record=False)
            for _ in range(runs):
                run_direct(record=True)
                run_served(client, record=True)
        finally:
            server.terminate()
            server.wait(20)
    return direct, served


def report(direct: dict, served: dict, args: argparse.Namespace) -> None:
    ms = lambda values: statistics.median(values) * 1000  # noqa: E731
    print(
        f"kinema server overhead: tiny backend, {SIZE[0]}x{SIZE[1]}, 9 frames, {args.steps} steps, audio on,"
        f" CPU, {args.threads} torch thread(s); median of {args.runs} alternating jobs after a warm-up"
    )
    print(f"{'':34}{'direct':>10}{'server':>10}{'overhead':>10}")
    rows = [
        ("submit -> first progress event", ms(direct["first"]), ms(served["first"])),
        ("submit -> completed (clip saved)", ms(direct["total"]), ms(served["total"])),
    ]
    for label, a, b in rows:
        print(f"{label:34}{a:>8.0f}ms{b:>8.0f}ms{b - a:>+8.0f}ms")
    print(f"{'download the MP4 (client)':34}{'':>10}{ms(served['download']):>8.0f}ms")


if __name__ == "__main__":
    main()
