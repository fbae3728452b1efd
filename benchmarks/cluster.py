"""kinema serve --ray on 1 vs 2 worker nodes, against the in-process worker.

Jobs are real generations of the embedded tiny LTX-2 (``--steps`` sets how long one takes: pick it so a job lasts
at least 2 s here). Each Ray run uses ``ray.cluster_utils.Cluster``: a head with no CPU and N worker nodes of one
CPU each, so each node runs one worker with one torch thread; the in-process run uses one torch thread too.
Warm-up jobs load the model on every worker first; then ``--jobs`` jobs are submitted at once.

Printed: seconds per job in-process, wall time of the jobs on 1 and 2 nodes and their ratio, the per-job overhead
of the Ray path against the in-process worker (1 node, same jobs one after another), time from submit to the
first progress event both ways, the machine's cores and load (this machine is shared: the load is what else ran).

    python benchmarks/cluster.py [--jobs 8] [--steps 60]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

STORE = 80 * 2**20


def job_fields(steps: int) -> dict:
    return {"prompt": "a red ball bounces", "backend": "tiny", "steps": steps, "seconds": 1.0, "audio": False}


def run_jobs(manager, steps: int, count: int) -> float:
    """Submit ``count`` jobs at once; wall seconds until all completed."""
    started = time.monotonic()
    ids = [manager.submit(job_fields(steps))["id"] for _ in range(count)]
    done: set[str] = set()
    while len(done) < count:
        for job_id in set(ids) - done:
            record = manager.get(job_id)
            if record["status"] in ("failed", "cancelled"):
                raise SystemExit(f"job {job_id} {record['status']}: {record['error_message']}")
            if record["status"] == "completed":
                done.add(job_id)
        time.sleep(0.05)
    return time.monotonic() - started


def first_progress(manager, steps: int) -> float:
    """Seconds from submit to the first progress event of an idle server's job (the job is then cancelled)."""
    seen = threading.Event()
    started = time.monotonic()
    record = manager.submit(job_fields(steps))
    subscribed = manager.subscribe(record["id"], lambda event: event.name == "progress" and seen.set())
    assert subscribed is not None
    snapshot, unsubscribe = subscribed
    if not any(e.name == "progress" for e in snapshot):
        seen.wait(120)
    elapsed = time.monotonic() - started
    unsubscribe()
    manager.cancel(record["id"])
    while manager.get(record["id"])["status"] not in ("completed", "failed", "cancelled"):
        time.sleep(0.05)
    return elapsed


def in_process(home: Path, steps: int, count: int) -> dict:
    from kinema.plugins import load_plugins
    from kinema.server.jobs import JobManager

    load_plugins()
    manager = JobManager(home).start()
    try:
        run_jobs(manager, steps, 1)  # warm-up: builds and loads the tiny model
        first = first_progress(manager, steps)
        wall = run_jobs(manager, steps, count)
    finally:
        manager.stop()
    return {"wall": wall, "job": wall / count, "first": first}


def on_ray(home: Path, steps: int, count: int, nodes: int) -> dict:
    import ray
    from ray.cluster_utils import Cluster

    from kinema.plugins import load_plugins
    from kinema.server.ray_pool import Pool, RayJobManager

    load_plugins()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "object_store_memory": STORE, "include_dashboard": False},
    )
    for _ in range(nodes):
        cluster.add_node(num_cpus=1, object_store_memory=STORE)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, namespace="kinema", logging_level="warning")
    env = {"KINEMA_HOME": os.environ["KINEMA_HOME"], "KINEMA_DEVICE": "cpu", "KINEMA_LOAD_PLUGINS": ""}
    manager = RayJobManager(home, address=cluster.address, pool=Pool(env=env)).start()
    try:
        run_jobs(manager, steps, nodes)  # warm-up: every worker loads the model
        first = first_progress(manager, steps)
        wall = run_jobs(manager, steps, count)
    finally:
        manager.stop()
        ray.shutdown()
        cluster.shutdown()
    return {"wall": wall, "first": first}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=60, help="steps a job (sets its length; aim for >= 2 s)")
    parser.add_argument("--in-process", type=Path, help=argparse.SUPPRESS)  # the baseline's own process
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # the in-process worker, like each Ray worker: one torch thread
    if args.in_process:
        print(json.dumps(in_process(args.in_process, steps=args.steps, count=args.jobs)))
        return
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="kinema-cluster-bench-") as tmp:
        os.environ["KINEMA_HOME"], os.environ["KINEMA_DEVICE"] = tmp, "cpu"
        # One KINEMA_HOME for the models (the tiny model is built once: a shared model path); each run's jobs in
        # their own folder.
        # In a process of its own session, as Ray starts its workers: with the kernel's autogroup scheduling (Linux
        # desktops and this machine), CPU time is shared out per session first, so on a busy machine a worker in
        # this benchmark's own session would get less of it than a Ray worker and look slower for that alone.
        local = json.loads(
            subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--in-process",
                    str(Path(tmp) / "local"),
                    "--jobs",
                    str(args.jobs),
                    "--steps",
                    str(args.steps),
                ],
                check=True,
                capture_output=True,
                text=True,
                start_new_session=True,
                # One torch thread in the worker thread too: torch.set_num_threads holds for the calling thread
                # only, and Ray gives each 1-CPU actor OMP_NUM_THREADS=1.
                env={**os.environ, "OMP_NUM_THREADS": "1"},
            ).stdout
        )
        print(f"in-process: {local['job']:.2f} s a job, {local['wall']:.1f} s for {args.jobs}", file=sys.stderr)
        results = {}
        for nodes in (1, 2):
            results[nodes] = on_ray(Path(tmp) / f"ray{nodes}", steps=args.steps, count=args.jobs, nodes=nodes)
            print(f"ray, {nodes} node(s): {results[nodes]['wall']:.1f} s for {args.jobs}", file=sys.stderr)
    load_after = os.getloadavg()
    one, two = results[1], results[2]
    overhead = (one["wall"] - local["wall"]) / args.jobs
    autogroup = Path("/proc/sys/kernel/sched_autogroup_enabled")
    grouped = autogroup.is_file() and autogroup.read_text().strip() == "1"
    print(
        f"| machine | {os.cpu_count()} cores; load average {load[0]:.1f} before, {load_after[0]:.1f} after;"
        f" autogroup scheduling {'on' if grouped else 'off'} |"
    )
    print("|---|---|")
    print(f"| one job in-process ({args.jobs} in a row, mean) | {local['job']:.2f} s |")
    print(f"| {args.jobs} jobs in-process | {local['wall']:.1f} s |")
    print(f"| {args.jobs} jobs, Ray, 1 worker node | {one['wall']:.1f} s |")
    print(f"| {args.jobs} jobs, Ray, 2 worker nodes | {two['wall']:.1f} s |")
    print(f"| throughput, 2 nodes vs 1 | {one['wall'] / two['wall']:.2f}x |")
    print(
        f"| Ray overhead a job (1 node vs in-process) | {overhead:+.2f} s ({100 * overhead / local['job']:+.1f} % of a job) |"
    )
    print(f"| first progress event, in-process | {local['first']:.2f} s |")
    print(f"| first progress event, Ray | {one['first']:.2f} s (1 node), {two['first']:.2f} s (2 nodes) |")


if __name__ == "__main__":
    main()
