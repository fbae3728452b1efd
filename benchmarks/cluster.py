"""kinema serve --ray on 1 vs 2 worker nodes, against the in-process worker.

Jobs are real generations of the embedded tiny LTX-2 (``--steps`` sets how long one takes: pick it so a job lasts
at least 2 s here). Each Ray run uses ``ray.cluster_utils.Cluster``: a head with no CPU and N worker nodes of one
CPU each, so each node runs one worker with one torch thread; the in-process run uses one torch thread too.
Warm-up jobs load the model on every worker first; then ``--jobs`` jobs are submitted at once.

Printed: seconds per job in-process, wall time of the jobs on 1 and 2 nodes and their ratio, the per-job overhead
of the Ray path against the in-process worker (1 node, same jobs one after another), time from submit to the
first progress event both ways, the machine's cores and load (this machine is shared: the load is what else ran).

Every part runs in a process of its own session (``_alone``), and ``--rounds N`` runs them all N times in turn:
on a shared machine the load drifts within minutes, so ratios are taken within a round and their medians shown.

And the machine's own ceiling for two workers: the same jobs split over two plain in-process servers at once, in
one session as Ray's workers are (with the kernel's autogroup scheduling a session is one share of the CPU), against
one such server. Two workers cannot go faster than the CPU they get: on 2 cores with a training run holding one,
that ceiling is what the 2-node ratio is to be read against (Ray's share of it: ratio / ceiling).

    python benchmarks/cluster.py [--jobs 8] [--steps 60] [--rounds 3]
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


def in_process(home: Path, steps: int, count: int, barrier: Path | None = None, party: int = 1) -> dict:
    """``barrier``: a folder where ``party`` such servers meet after their warm-up, so their jobs run at once."""
    from kinema.plugins import load_plugins
    from kinema.server.jobs import JobManager

    load_plugins()
    manager = JobManager(home).start()
    try:
        run_jobs(manager, steps, 1)  # warm-up: builds and loads the tiny model
        first = first_progress(manager, steps) if barrier is None else 0.0
        if barrier is not None:
            (barrier / f"ready-{os.getpid()}").touch()
            while len(list(barrier.glob("ready-*"))) < party:
                time.sleep(0.01)
        wall = run_jobs(manager, steps, count)
    finally:
        manager.stop()
    return {"wall": wall, "job": wall / count, "first": first}


def ceiling(tmp: Path, steps: int, count: int) -> float:
    """Wall seconds for ``count`` jobs split over two in-process servers at once, both in one new session."""
    barrier = tmp / "barrier"
    barrier.mkdir()
    command = [sys.executable, __file__, "--steps", str(steps), "--barrier", str(barrier), "--in-process"]
    halves = [count // 2, count - count // 2]
    launch = " & ".join(
        " ".join([*command, str(tmp / f"half{n}"), "--jobs", str(jobs)]) + f" > {tmp / f'half{n}.json'}"
        for n, jobs in enumerate(halves)
    )
    subprocess.run(
        ["sh", "-c", f"{launch} & wait"],
        check=True,
        start_new_session=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    return max(json.loads((tmp / f"half{n}.json").read_text())["wall"] for n in range(2))


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


def _alone(*options: str) -> dict:
    """This script in a process of its own session (its ``--in-process`` or ``--ray-nodes`` part), for its JSON.

    Every part runs in a session of its own, Ray's too: with the kernel's autogroup scheduling (Linux desktops and
    this machine) CPU time is shared out per session first, and Ray's driver, server and workers are all in the
    session that started them (measured: a Ray actor's /proc/self/autogroup is its driver's). So each part gets one
    share of a busy machine, as the others do.
    """
    return json.loads(
        subprocess.run(
            [sys.executable, __file__, *options],
            check=True,
            capture_output=True,
            text=True,
            start_new_session=True,
            # One torch thread in the worker thread too: torch.set_num_threads holds for the calling thread
            # only, and Ray gives each 1-CPU actor OMP_NUM_THREADS=1.
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        ).stdout
    )


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=60, help="steps a job (sets its length; aim for >= 2 s)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="times to run every part, in turn (a shared machine's load drifts within minutes: ratios are taken"
        " within a round, and the medians printed)",
    )
    parser.add_argument("--in-process", type=Path, help=argparse.SUPPRESS)  # the baseline's own process
    parser.add_argument("--barrier", type=Path, help=argparse.SUPPRESS)  # the ceiling's two servers meet here
    parser.add_argument("--ray-nodes", type=int, help=argparse.SUPPRESS)  # a Ray part's own process
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # the in-process worker, like each Ray worker: one torch thread
    if args.in_process and args.ray_nodes:
        print(json.dumps(on_ray(args.in_process, steps=args.steps, count=args.jobs, nodes=args.ray_nodes)))
        return
    if args.in_process:
        party = 2 if args.barrier else 1
        print(json.dumps(in_process(args.in_process, args.steps, args.jobs, barrier=args.barrier, party=party)))
        return
    load = os.getloadavg()
    rounds: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="kinema-cluster-bench-") as tmp:
        # One KINEMA_HOME for the models (the tiny model is built once: a shared model path); each part's jobs in
        # a folder of their own.
        os.environ["KINEMA_HOME"], os.environ["KINEMA_DEVICE"] = tmp, "cpu"
        common = ["--jobs", str(args.jobs), "--steps", str(args.steps)]
        for n in range(args.rounds):
            folder = Path(tmp) / f"round{n}"
            folder.mkdir()
            local = _alone("--in-process", str(folder / "local"), *common)
            print(f"in-process: {local['job']:.2f} s a job, {local['wall']:.1f} s for {args.jobs}", file=sys.stderr)
            two_local = ceiling(folder, args.steps, args.jobs)
            print(f"two in-process servers at once: {two_local:.1f} s for {args.jobs}", file=sys.stderr)
            ray = {}
            for nodes in (1, 2):
                ray[nodes] = _alone("--in-process", str(folder / f"ray{nodes}"), "--ray-nodes", str(nodes), *common)
                print(f"ray, {nodes} node(s): {ray[nodes]['wall']:.1f} s for {args.jobs}", file=sys.stderr)
            rounds.append({"local": local, "two_local": two_local, "one": ray[1], "two": ray[2]})
    load_after = os.getloadavg()
    autogroup = Path("/proc/sys/kernel/sched_autogroup_enabled")
    grouped = autogroup.is_file() and autogroup.read_text().strip() == "1"

    def median(figure) -> float:
        return _median([figure(r) for r in rounds])

    def each(figure, form: str) -> str:
        values = [figure(r) for r in rounds]
        spread = f" (rounds: {', '.join(format(v, form) for v in values)})" if len(values) > 1 else ""
        return f"{format(_median(values), form)}{spread}"

    jobs = args.jobs
    print(
        f"| machine | {os.cpu_count()} cores; load average {load[0]:.1f} before, {load_after[0]:.1f} after;"
        f" autogroup scheduling {'on' if grouped else 'off'}; {len(rounds)} round(s), medians |"
    )
    print("|---|---|")
    print(f"| one job in-process ({jobs} in a row, mean) | {each(lambda r: r['local']['job'], '.2f')} s |")
    print(f"| {jobs} jobs in-process | {each(lambda r: r['local']['wall'], '.1f')} s |")
    print(f"| {jobs} jobs, Ray, 1 worker node | {each(lambda r: r['one']['wall'], '.1f')} s |")
    print(f"| {jobs} jobs, Ray, 2 worker nodes | {each(lambda r: r['two']['wall'], '.1f')} s |")
    print(f"| throughput, 2 nodes vs 1 | {each(lambda r: r['one']['wall'] / r['two']['wall'], '.2f')}x |")
    print(
        f"| {jobs} jobs on two in-process servers at once (one session) | {each(lambda r: r['two_local'], '.1f')} s |"
    )
    print(
        "| this machine's ceiling for two workers (2 servers vs 1) |"
        f" {each(lambda r: r['local']['wall'] / r['two_local'], '.2f')}x |"
    )
    share = median(lambda r: (r["one"]["wall"] / r["two"]["wall"]) / (r["local"]["wall"] / r["two_local"]))
    print(f"| Ray's 2-node ratio as a share of that ceiling | {100 * share:.0f} % |")
    overhead = median(lambda r: (r["one"]["wall"] - r["local"]["wall"]) / jobs)
    job = median(lambda r: r["local"]["job"])
    print(f"| Ray overhead a job (1 node vs in-process) | {overhead:+.2f} s ({100 * overhead / job:+.1f} % of a job) |")
    print(f"| first progress event, in-process | {each(lambda r: r['local']['first'], '.2f')} s |")
    print(
        f"| first progress event, Ray | {each(lambda r: r['one']['first'], '.2f')} s (1 node),"
        f" {each(lambda r: r['two']['first'], '.2f')} s (2 nodes) |"
    )


if __name__ == "__main__":
    main()
