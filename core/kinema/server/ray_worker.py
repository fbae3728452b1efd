"""One kinema worker of a Ray cluster (``kinema serve --ray``): the code a Ray actor runs on a worker node.

Nothing here imports Ray: ``kinema.server.ray_pool`` wraps ``Worker`` in ``ray.remote`` with the actor's options
(one GPU, or one CPU; named and detached). A worker keeps the model it last ran loaded, chooses its memory policy
from its own free memory (as any kinema does), and generates clips: it never saves or signs one. The server keeps
the signing keys, the cameos and the job store, and writes every clip itself.

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
from kinema.errors import KinemaError
from kinema.plugins import get_backends, load_plugins, pm
from kinema.progress import CancelToken, Progress
from kinema.request import GenerationRequest
from kinema.server.ray_cameos import on_worker
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
        self._backend_key: tuple | None = None
        self._backend: Any = None
        self.loads = 0  # how many times a model was loaded (a job for the resident model loads nothing)
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
            "resident": [list(self._backend_key)] if self._backend_key else [],
            "loads": self.loads,
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
                run.future.set_result(self._generate(run, fields, image, task, source, share))
            except BaseException as error:
                run.future.set_exception(error)
            finally:
                run.finished_at = time.time()
        return run.future.result()

    def forget(self, job_id: str) -> None:
        """The server has the job's outcome: drop it (a later run of this id starts anew)."""
        with self._lock:
            run = self._runs.get(job_id)
            if run is not None and run.finished_at is not None:
                del self._runs[job_id]

    def poll(self, job_id: str, since: int = 0, preview_seq: int = 0) -> tuple[list, Any, int]:
        """Progress events from index ``since`` on, and the latest preview if newer than ``preview_seq``."""
        with self._lock:
            run = self._runs.get(job_id)
            if run is None:
                return [], None, preview_seq
            events = run.events[since:]
            if run.preview_seq > preview_seq:
                return events, run.preview, run.preview_seq
            return events, None, preview_seq

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
        key = (request.backend, request.model)
        if key != self._backend_key:
            if self._backend is not None:
                with contextlib.suppress(Exception):
                    self._backend.unload()
            self._backend, self._backend_key = None, None
            backend = engine.resolve_backend(request)
            status = backend.status()
            if not status.ready:
                raise KinemaError(f"this worker cannot run {backend.name!r}: {status.detail}")
            self._backend, self._backend_key = backend, key
            self.loads += 1
        return self._backend

    def _forget_old(self) -> None:
        now = time.time()
        for job_id, run in list(self._runs.items()):
            if run.finished_at is not None and now - run.finished_at > KEEP_FINISHED_S:
                del self._runs[job_id]


__all__ = ["Worker"]
