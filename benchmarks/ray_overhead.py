"""What the Ray path adds to one job, against the in-process worker, in the same run.

The jobs use ``sleeper``, a backend defined here that waits a fixed time a step and uses no CPU while it does:
the generation then costs the same on both paths whatever else the machine runs, and the difference between a
job's time on Ray and in-process is what Ray adds (dispatch, reading progress every 0.1 s, the clip back through
Ray's object store, the server's copy of it), not a busier or idler CPU. Both paths save, sign and write the clip
the same way on the server, so that cost is in both and cancels out.

Jobs run one after another (no queueing), ``--jobs`` per clip size and path, the two paths taking turns, after
one warm-up job each way; a Ray cluster of one worker node (``ray.cluster_utils.Cluster``: a head without CPUs,
one node of one CPU). Each row: the mean seconds a job took from submit to completed, in-process and on Ray, the
difference, the ratio, and the difference as a share of the in-process job; and the time from submit to the
first progress event both ways.

    python benchmarks/ray_overhead.py [--jobs 5] [--seconds 2]

``measure`` also runs in tests/test_ray.py on a toy size, so this script cannot rot.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from kinema import Clip, hookimpl
from kinema.backends.base import Backend, BackendStatus, Defaults
from kinema.backends.limits import Limits
from kinema.progress import Progress

STEP_S = 0.1
# (width, height, frames): the demo world's clip, a 512 px clip, a 768x512 4 s clip at 24 fps.
SIZES = ((64, 64, 25), (512, 512, 49), (768, 512, 97))
STORE = 512 * 2**20  # the object store holds the largest clip (114 MB) with room to spare


class Sleeper(Backend):
    name = "sleeper"
    description = "waits STEP_S a step and returns a grey clip of the planned size (benchmarks/ray_overhead.py)"
    defaults = Defaults(width=64, height=64, fps=24, seconds=1, steps=20, guidance=1.0)
    size_multiple, frame_multiple, min_frames = 16, 1, 1
    makes_audio = False
    is_demo = True
    limits = Limits(frames=257, pixels=1024 * 1024, steps=500, seconds=20, why="a benchmark's")

    def status(self):
        return BackendStatus(True, "a benchmark backend", "cpu")

    def generate(self, request, plan, *, progress, cancel, preview=False):
        for step in range(plan.steps):
            time.sleep(STEP_S)
            cancel.raise_if_cancelled()
            progress(Progress(step + 1, plan.steps, "video"))
        frames = np.full((plan.num_frames, plan.height, plan.width, 3), 96, np.uint8)
        frames[:, :, : plan.width // 2] = 160  # something for the encoder to do
        return Clip(frames, plan.fps)


@hookimpl
def register_backends(register):
    register(Sleeper())


def one_job(manager, fields: dict) -> tuple[float, float]:
    """Submit one job and wait for it: (seconds to completed, seconds to its first progress event)."""
    first = threading.Event()
    started = time.monotonic()
    record = manager.submit(fields)
    seen: list[float] = []

    def listen(event) -> None:
        if event.name == "progress" and not first.is_set():
            seen.append(time.monotonic() - started)
            first.set()

    subscribed = manager.subscribe(record["id"], listen)
    while True:
        current = manager.get(record["id"])
        if current["status"] == "completed":
            break
        if current["status"] in ("failed", "cancelled"):
            raise SystemExit(f"job {record['id']} {current['status']}: {current['error_message']}")
        time.sleep(0.005)
    elapsed = time.monotonic() - started
    if subscribed is not None:
        subscribed[1]()
    return elapsed, seen[0] if seen else float("nan")


def measure(manager, fields: dict, jobs: int) -> dict:
    """Mean seconds a job takes on ``manager`` (after one warm-up job), and to its first progress event."""
    one_job(manager, fields)
    runs = [one_job(manager, fields) for _ in range(jobs)]
    return {"job": statistics.mean(r[0] for r in runs), "first": statistics.mean(r[1] for r in runs)}


def measure_both(local, remote, fields: dict, jobs: int) -> tuple[dict, dict]:
    """``measure`` on both managers with their jobs taking turns, so a machine that gets busier or idler during
    the run weighs on both paths alike."""
    one_job(local, fields)
    one_job(remote, fields)
    runs: dict[str, list] = {"local": [], "remote": []}
    for _ in range(jobs):
        runs["local"].append(one_job(local, fields))
        runs["remote"].append(one_job(remote, fields))
    local_means, remote_means = (
        {"job": statistics.mean(r[0] for r in runs[k]), "first": statistics.mean(r[1] for r in runs[k])}
        for k in ("local", "remote")
    )
    return local_means, remote_means


def job_fields(width: int, height: int, frames: int, steps: int, fps: int = 24) -> dict:
    return {
        "prompt": "a grey clip",
        "backend": "sleeper",
        "width": width,
        "height": height,
        "fps": fps,
        "seconds": (frames - 1) / fps,
        "steps": steps,
        "audio": False,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5, help="jobs per clip size and path, after a warm-up")
    parser.add_argument("--seconds", type=float, default=2.0, help="how long one generation waits")
    args = parser.parse_args()
    steps = max(1, round(args.seconds / STEP_S))
    here = Path(__file__).resolve().parent
    sys.path.insert(0, str(here))
    import ray
    import ray_overhead  # this file under its module name, as the workers load it
    from ray.cluster_utils import Cluster

    from kinema.plugins import load_plugins, pm
    from kinema.server.jobs import JobManager
    from kinema.server.ray_pool import Pool, RayJobManager

    with tempfile.TemporaryDirectory(prefix="kinema-ray-overhead-") as tmp:
        os.environ["KINEMA_HOME"], os.environ["KINEMA_DEVICE"], os.environ["KINEMA_LOAD_PLUGINS"] = tmp, "cpu", ""
        load_plugins()
        pm.register(ray_overhead, name="ray_overhead")
        cluster = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 0, "object_store_memory": STORE, "include_dashboard": False},
        )
        cluster.add_node(num_cpus=1, object_store_memory=STORE)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, namespace="kinema", logging_level="warning")
        env = {"PYTHONPATH": str(here), "KINEMA_HOME": tmp, "KINEMA_DEVICE": "cpu", "KINEMA_LOAD_PLUGINS": ""}
        rows = []
        try:
            for width, height, frames in SIZES:
                fields = job_fields(width, height, frames, steps)
                local = JobManager(Path(tmp) / "local").start()
                remote = RayJobManager(
                    Path(tmp) / "ray", address=cluster.address, pool=Pool(plugins=("ray_overhead",), env=env)
                ).start()
                try:
                    inprocess, on_ray = measure_both(local, remote, fields, args.jobs)
                finally:
                    local.stop()
                    remote.stop()
                rows.append((width, height, frames, inprocess, on_ray))
                print(f"{width}x{height}x{frames}: {inprocess['job']:.2f} s vs {on_ray['job']:.2f} s", file=sys.stderr)
        finally:
            ray.shutdown()
            cluster.shutdown()
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} cores, load average {load:.1f}; {args.jobs} jobs a row, one after another, after a")
    print(f"warm-up; each generation waits {steps * STEP_S:.1f} s without using the CPU.\n")
    print(
        "| clip (W x H x frames, uint8) | in-process s/job | Ray s/job | Ray − in-process | Ray / in-process |", end=""
    )
    print(" Ray's cost, % of the job | first progress event, in-process / Ray |")
    print("|---|---|---|---|---|---|---|")
    for width, height, frames, inprocess, on_ray in rows:
        cost = on_ray["job"] - inprocess["job"]
        megabytes = width * height * frames * 3 / 2**20
        print(
            f"| {width}x{height}x{frames} ({megabytes:.1f} MB) | {inprocess['job']:.3f} | {on_ray['job']:.3f} |"
            f" {cost:+.3f} s | {on_ray['job'] / inprocess['job']:.3f}x | {100 * cost / inprocess['job']:+.1f} % |"
            f" {inprocess['first']:.3f} s / {on_ray['first']:.3f} s |"
        )


if __name__ == "__main__":
    main()
