"""One kinema worker of a Ray cluster (``kinema serve --ray``): the code a Ray actor runs on a worker node.

Nothing here imports Ray: ``kinema.server.ray_pool`` wraps ``Worker`` in ``ray.remote`` with the actor's options
(one GPU, or one CPU; named and detached). A worker keeps the model it last ran loaded, and only that one: a job
for another model unloads it first (its weights leave memory, so a later job for it loads them again), which is
why the server routes by what each worker holds and what unloading it would cost (``resident_bytes``). It chooses
its memory policy from its own free memory (as any kinema does), and generates clips: it never saves or signs one.
The server keeps the signing keys, the cameos and the job store, and writes every clip itself.

Jobs are keyed by their id, so a server that restarted while a job ran joins the generation already under way
instead of starting it again. The actor runs its methods on several threads (``max_concurrency``): ``run``
blocks while ``poll`` and ``cancel`` answer; the cancel token is checked at every step.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import tempfile
import threading
import time
from concurrent.futures import Future
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kinema import engine
from kinema.backends.limits import device_of, job_limits, memory_bounds
from kinema.backends.loading import loaded_pipelines
from kinema.errors import KinemaError
from kinema.plugins import get_backends, load_plugins, pm
from kinema.progress import CancelToken, Progress
from kinema.request import GenerationRequest
from kinema.server.ray_cameos import on_worker
from kinema.server.resident import Resident
from kinema.server.tasks import run as run_task
from kinema.version import __version__

KEEP_FINISHED_S = 600.0  # a finished job's result waits this long for a server that restarted to collect it


class _Run:
    def __init__(self) -> None:
        self.token = CancelToken()
        self.future: Future = Future()
        self.events: list[tuple[int, int, str]] = []  # (step, total, stage), in order
        self.preview: Any = None
        self.preview_seq = 0
        self.finished_at: float | None = None


class Worker:
    """Runs generations for the server; reports what it holds (``info``)."""

    def __init__(self, threads: int = 0, plugins: tuple[str, ...] = ()):
        if threads > 0:
            os.environ.setdefault("OMP_NUM_THREADS", str(threads))
            import torch  # the worker's own thread count: one torch thread per CPU Ray gave it

            torch.set_num_threads(threads)
        self.threads = threads
        load_plugins()
        for name in plugins:  # extra plugin modules by name (tests, or backends installed only on the workers)
            import importlib

            module = importlib.import_module(name)
            if not pm.is_registered(module):
                pm.register(module, name=name)
        self._lock = threading.Lock()
        self._runs: dict[str, _Run] = {}
        self.resident = Resident()  # the only model in this process: a switch drops every cached pipeline
        self.resident_bytes = 0  # what the resident model's weights take in memory, measured after each job
        self.started = 0  # generations started (a job joined after a server restart starts none)
        self.started_at = time.time()

    # -- what the server asks

    def info(self) -> dict:
        """Version, where it runs, what it holds, and what each backend can do here."""
        backends = {}
        for name, backend in {b.name: b for b in get_backends().values()}.items():  # aliases once
            try:
                status = backend.status()
                backends[name] = {
                    "ready": bool(status.ready),
                    "detail": status.detail,
                    "device": status.device,
                    "limits": asdict(job_limits(backend)),
                    # What its decoded frames must fit in here: the server checks requests against this.
                    "memory": [asdict(bound) for bound in memory_bounds(device_of(backend))],
                }
            except Exception as error:  # a broken plugin must not hide the others
                backends[name] = {
                    "ready": False,
                    "detail": f"status failed: {error}",
                    "device": "",
                    "limits": {},
                    "memory": [],
                }
        with self._lock:
            running = list(self._runs)  # generating, or finished and not yet collected
        ray = sys.modules.get("ray")  # loaded in an actor; this module never imports Ray itself
        node = ray.get_runtime_context().get_node_id() if ray is not None and ray.is_initialized() else None
        return {
            "version": __version__,
            "host": platform.node(),
            "node": node,
            "pid": os.getpid(),
            "threads": self.threads,
            **self.held(),
            "started": self.started,
            "running": running,
            "backends": backends,
        }

    def run(
        self,
        job_id: str,
        fields: dict,
        image: Any = None,
        task: dict | None = None,
        source: Any = None,
        share: dict | None = None,
    ) -> Any:
        """Generate the job's clip and return it (unsaved); joins the job's generation if it is already running.

        ``task``: a remix, extend or storyboard (``kinema.server.tasks``) run instead of one generation, as the
        server runs it in-process; ``source``: the bytes of the MP4 a remix or extend builds on (the server's);
        ``share``: the job's cameos and speech as the server consented them (``kinema.server.ray_cameos``).
        """
        with self._lock:
            self._forget_old()
            run = self._runs.get(job_id)
            fresh = run is None
            if fresh:
                run = self._runs[job_id] = _Run()
                self.started += 1
        assert run is not None
        if fresh:
            try:
                clip = self._generate(run, fields, image, task, source, share)
            except BaseException as error:
                self._measure()
                run.finished_at = time.time()
                run.future.set_exception(error)
            else:
                self._measure()  # before the result is ready: the server reads it with the job's last poll
                run.finished_at = time.time()
                run.future.set_result(clip)
        return run.future.result()

    def held(self) -> dict:
        """The model it holds, what its weights take (what unloading it would throw away) and how many loads so far."""
        return {
            "resident": [list(self.resident.key)] if self.resident.key else [],
            "resident_bytes": self.resident_bytes,
            "loads": self.resident.loads,  # a job for the resident model loads nothing
        }

    def forget(self, job_id: str) -> None:
        """The server has the job's outcome: drop it (a later run of this id starts anew)."""
        with self._lock:
            run = self._runs.get(job_id)
            if run is not None and run.finished_at is not None:
                del self._runs[job_id]

    def poll(self, job_id: str, since: int = 0, preview_seq: int = 0) -> tuple[list, Any, int, dict]:
        """Progress events from index ``since`` on, the latest preview if newer than ``preview_seq``, and what the
        worker holds (``held``: read once the job is done, it is what the server routes the next jobs by)."""
        with self._lock:
            run = self._runs.get(job_id)
            if run is None:
                return [], None, preview_seq, self.held()
            events = run.events[since:]
            if run.preview_seq > preview_seq:
                return events, run.preview, run.preview_seq, self.held()
            return events, None, preview_seq, self.held()

    def cancel(self, job_id: str) -> bool:
        """Stop the job's generation at its next step."""
        with self._lock:
            run = self._runs.get(job_id)
        if run is None:
            return False
        run.token.cancel()
        return True

    # -- generating

    def _generate(
        self,
        run: _Run,
        fields: dict,
        image: Any,
        task: dict | None = None,
        source: Any = None,
        share: dict | None = None,
    ) -> Any:
        request = GenerationRequest(**fields, image=image)

        def progress(event: Progress) -> None:
            with self._lock:
                run.events.append((event.step, event.total, event.stage))
                if event.preview is not None:
                    run.preview, run.preview_seq = event.preview, run.preview_seq + 1

        backend = self._backend_for(request)
        # What the server sent (a cameo's portraits, the clip a remix or extend builds on) lives in a private
        # folder only while the job runs; the server puts its own path back in the result's lineage.
        with tempfile.TemporaryDirectory(prefix="kinema-ray-job-") as folder:
            if task is None:
                conditioning = on_worker(share, Path(folder)) if share else None
                return engine.generate(
                    request,
                    progress=progress,
                    cancel=run.token,
                    backend=backend,
                    preview=True,
                    conditioning=conditioning,
                )
            path = None
            if source is not None:
                path = Path(folder) / "source.mp4"
                path.write_bytes(source)
            return run_task(
                task, request, backend, parent_video=lambda parent: path, progress=progress, cancel=run.token
            )

    def _backend_for(self, request: GenerationRequest) -> Any:
        if (request.backend, request.model) != self.resident.key:
            self.resident_bytes = 0  # the old model is about to go
        return self.resident.backend_for(request, check=_can_run)

    def _measure(self) -> None:
        if self.resident.backend is not None:
            with contextlib.suppress(Exception):  # a figure for routing: never a reason to fail a job
                self.resident_bytes = weights_bytes(self.resident.backend)

    def _forget_old(self) -> None:
        now = time.time()
        for job_id, run in list(self._runs.items()):
            if run.finished_at is not None and now - run.finished_at > KEEP_FINISHED_S:
                del self._runs[job_id]


def _can_run(backend: Any) -> None:
    status = backend.status()
    if not status.ready:
        raise KinemaError(f"this worker cannot run {backend.name!r}: {status.detail}")


def weights_bytes(backend: Any) -> int:
    """Bytes of the tensors this process holds for ``backend``: its loaded pipelines (kinema's load cache) and any
    modules or pipelines the backend keeps itself. Each storage counts once."""
    torch = sys.modules.get("torch")
    if torch is None:  # nothing imported torch: nothing is loaded
        return 0
    pending: list[Any] = [pipe for pipe, _device, _placement in loaded_pipelines()]
    pending += list(vars(backend).values())
    visited: set[int] = set()
    storages: set[tuple[str, int]] = set()
    total = 0
    while pending:
        value = pending.pop()
        if id(value) in visited:
            continue
        visited.add(id(value))
        if isinstance(value, torch.nn.Module):
            for tensor in [*value.parameters(), *value.buffers()]:
                storage = tensor.untyped_storage()
                where = (str(tensor.device), storage.data_ptr())
                if where not in storages:
                    storages.add(where)
                    total += storage.nbytes()
        elif isinstance(getattr(value, "components", None), dict):  # a diffusers pipeline
            pending.extend(value.components.values())
        elif isinstance(value, dict):
            pending.extend(value.values())
        elif isinstance(value, (list, tuple)):
            pending.extend(value)
    return total


__all__ = ["Worker", "weights_bytes"]
