"""``kinema serve --ray ADDRESS``: the job server's jobs run on a pool of Ray actors, one per GPU of the cluster.

The server keeps what it always kept: the HTTP API, the SQLite job store, the signing keys and the cameos. Only
generation moves: each worker (``kinema.server.ray_worker.Worker``, a named, detached actor) keeps the model it
last ran, and the server sends each job to a free worker that already holds the job's model when there is one,
else to the free worker whose unload costs least (``Pool.pick``). The clip comes back unsaved; the server checks consent again,
signs it and writes it atomically, as for a job run in-process.

Ray is imported only here, and this module only with ``--ray`` (``pip install 'kinema[ray]'``).

Faults: a worker or node lost mid-job puts the job back in the queue once (its attempt counts), then fails it
with the reason. Workers outlive the server (detached, ``max_restarts=-1``): a server that restarts re-attaches
to them, and a job that was running joins the generation still under way on its worker. The cluster itself lost
(its head's GCS unreachable): the server stays up and says so on ``/health``, queued jobs wait for it, and a
running job whose worker stops answering counts as lost (once more when the cluster is back, else failed).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kinema import engine
from kinema.backends.base import BackendStatus
from kinema.backends.limits import Limits, MemoryBound, checked_elsewhere
from kinema.backends.remote import RemoteBackend
from kinema.cameo import store as cameo_store
from kinema.errors import GenerationCancelled, InvalidRequestError, KinemaError, MissingWeightsError
from kinema.media.files import encode_jpeg, encode_png, read_image
from kinema.progress import CancelToken, Progress
from kinema.request import GenerationRequest
from kinema.server.jobs import (
    INPUT_FILE,
    MAX_ATTEMPTS,
    SPRITESHEET_FILE,
    THUMBNAIL_FILE,
    VIDEO_FILE,
    JobManager,
    _describe_failure,
    _Live,
    atomic_write,
    spritesheet,
)
from kinema.server.ray_cameos import for_worker
from kinema.server.ray_worker import Worker
from kinema.server.tasks import run as run_task
from kinema.storyboard.cache import cache_key
from kinema.storyboard.run import Chain, ShotMaker
from kinema.version import __version__

NAMESPACE = "kinema"
WORKER_PREFIX = "kinema-worker-"
DEVICE = "ray"  # the jobs table's device for jobs the pool runs
POLL_S = 0.1  # how often a running job's progress is read from its worker
START_TIMEOUT_S = 300.0  # a new worker imports torch and kinema: minutes on a busy machine
REFRESH_S = 5.0  # how often workers that were lost or starting are asked again
CONSENT_S = 1.0  # how often a running cameo job's consent is asked again (a revoke stops the worker)
PROBE_S = 1.0  # how often the cluster's head (its GCS) is checked
SILENT_S = 15.0  # with the cluster lost, a running job's worker silent this long is taken for lost
# Without its GCS a Ray driver ends its own process after gcs_rpc_server_reconnect_timeout_s (60 s by default):
# that would take the whole server down with the cluster. A year instead: the server stays up, says so on /health
# and picks up again if the head comes back with its state (Ray's GCS fault tolerance). A cluster that sets its
# own value in its system config keeps it.
GCS_RECONNECT = ("RAY_gcs_rpc_server_reconnect_timeout_s", str(365 * 24 * 3600))


class RayUnavailableError(KinemaError):
    """Ray is not installed, or the cluster cannot be reached."""


class WorkerVersionError(KinemaError):
    """A worker runs another kinema version than the server."""


def _ray() -> Any:
    try:
        import ray  # only for --ray, and only here
    except ImportError:
        raise RayUnavailableError("kinema serve --ray needs Ray: pip install 'kinema[ray]'") from None
    return ray


def connect(address: str) -> None:
    """Join the Ray cluster at ``address`` (``auto``: start one on this machine, for this server alone)."""
    ray = _ray()
    if ray.is_initialized():
        return
    _reachable(address)
    os.environ.setdefault(*GCS_RECONNECT)
    try:
        if address == "auto":
            # No dashboard. Ray cannot be held to loopback: it turns 127.0.0.1 into this machine's address
            # (ray._private.services.resolve_ip_for_localhost) and its servers listen on every interface. A Ray that
            # ray.init starts asks for a token (RAY_AUTH_MODE=token, ~/.ray/auth_token) by default in Ray 2.60.
            ray.init(address="local", namespace=NAMESPACE, include_dashboard=False, logging_level="warning")
        else:
            ray.init(address=address, namespace=NAMESPACE, logging_level="warning")
    except Exception as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise RayUnavailableError(
            f"cannot reach Ray at {address!r} ({first}); start the head node with `ray start --head` and pass its"
            " address (e.g. --ray 10.0.0.5:6379), or use --ray auto for a Ray on this machine only"
        ) from None


def head_address(address: str) -> tuple[str, int] | None:
    """Where the cluster's head answers (its GCS, or the Ray Client server for ray://), to check it is there."""
    target = address.removeprefix("ray://") if address.startswith("ray://") else None
    if target is None:
        with contextlib.suppress(Exception):
            target = _ray().get_runtime_context().gcs_address
    if not target:
        return None
    host, _, port = target.rpartition(":")
    return (host.strip("[]"), int(port)) if host and port.isdigit() else None


def _reachable(address: str, timeout: float = 5.0) -> None:
    """A quick TCP check first: ``ray.init`` retries an unreachable address for minutes before it gives up."""
    if address == "auto":
        return
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise RayUnavailableError(f"--ray takes HOST:PORT, ray://HOST:PORT or auto; got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as error:
        raise RayUnavailableError(
            f"cannot reach Ray at {address!r} ({error.strerror or error}); start the head node with"
            " `ray start --head` and pass its address (e.g. --ray 10.0.0.5:6379), or use --ray auto for a Ray on"
            " this machine only"
        ) from None


@dataclass
class Slot:
    """One worker actor as the server sees it."""

    name: str
    handle: Any
    info: dict | None = None  # its last report; None while it starts or after it was lost
    known: dict | None = None  # its last report ever, kept while it is lost (what jobs it takes while Ray is away)
    job: str | None = None  # the job it runs now
    pending: Any = None  # an info() call under way
    since: float = field(default_factory=time.monotonic)
    used: float = 0.0  # when its last job ended (monotonic): of two workers equally cheap to unload, the older

    def holds(self, key: tuple) -> bool:
        return self.info is not None and list(key) in self.info["resident"]

    def can_run(self, backend: str, *, known: bool = False) -> bool:
        info = self.known if known else self.info
        return info is not None and bool(info["backends"].get(backend, {}).get("ready"))

    @property
    def where(self) -> str:
        return f"{self.name} on {self.info['host']}" if self.info else self.name


class Pool:
    """The workers: created (or found, when they outlive a server) by name, one per GPU, else one per CPU."""

    def __init__(self, *, size: int | None = None, plugins: tuple[str, ...] = (), env: dict | None = None):
        self.size = size
        self.plugins = tuple(plugins)
        self.env = dict(env or {})
        self.slots: list[Slot] = []
        self.lock = threading.RLock()
        self.head: tuple[str, int] | None = None  # checked every PROBE_S (head_address)
        self.lost_since: float | None = None  # when the head stopped answering (wall clock); None while it answers
        self.lost_reason = ""

    def attach(self, timeout: float = START_TIMEOUT_S) -> None:
        ray = _ray()
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        size = self.size or gpus or int(resources.get("CPU", 0))
        if size < 1:
            raise RayUnavailableError("the Ray cluster has no GPU and no CPU for kinema's workers; add a worker node")
        # One actor per GPU; CPU-only: one per CPU, with one torch thread each.
        options: dict[str, Any] = {"num_gpus": 1, "num_cpus": 0} if gpus else {"num_cpus": 1}
        threads = 0 if gpus else 1
        remote = ray.remote(Worker)
        existing = {a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["namespace"] == NAMESPACE}
        names = [f"{WORKER_PREFIX}{i}" for i in range(size)]
        names += sorted(n for n in existing if n.startswith(WORKER_PREFIX) and n not in names)  # outlived a resize
        slots = []
        for name in names:
            handle = remote.options(
                name=name,
                namespace=NAMESPACE,
                lifetime="detached",
                get_if_exists=True,
                max_restarts=-1,  # a lost node's worker starts again wherever there is room
                max_task_retries=0,  # a lost job is retried by the server, once, not silently by Ray
                max_concurrency=8,  # run() blocks; poll() and cancel() answer meanwhile
                runtime_env={"env_vars": self.env} if self.env else None,
                **options,
            ).remote(threads, self.plugins)
            slots.append(Slot(name, handle))
        with self.lock:
            self.slots = slots
        refs = {slot.handle.info.remote(): slot for slot in slots}
        ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=timeout)
        for ref in ready:
            self._take_info(refs[ref], ref)
        for ref, slot in refs.items():
            if ref not in ready:
                slot.pending = ref
        if not any(slot.info for slot in slots):
            raise RayUnavailableError(
                f"no kinema worker started on the Ray cluster within {timeout:.0f} s; is kinema installed on the"
                " worker nodes? (see their logs: /tmp/ray/session_latest/logs)"
            )

    def _take_info(self, slot: Slot, ref: Any) -> None:
        ray = _ray()
        try:
            info = ray.get(ref)
        except ray.exceptions.RayError as error:
            slot.info, slot.pending = None, None
            print(f"kinema: Ray worker {slot.name} is not available: {_first_line(error)}", file=sys.stderr)
            return
        if info["version"] != __version__:
            raise WorkerVersionError(
                f"Ray worker {slot.name} on {info['host']} runs kinema {info['version']}, this server kinema"
                f" {__version__}: install the same kinema on every node, then restart Ray there (ray stop; ray start"
                " ...) so its kinema workers start anew"
            )
        slot.info, slot.known, slot.pending, slot.since = info, info, None, time.monotonic()

    def refresh(self) -> None:
        """Ask workers that are starting, or were lost, for a report again (never waits)."""
        ray = _ray()
        with self.lock:
            for slot in self.slots:
                if slot.job is not None:
                    continue
                if slot.pending is not None:
                    ready, _ = ray.wait([slot.pending], timeout=0)
                    if ready:
                        with contextlib.suppress(WorkerVersionError):  # refused: stays without info
                            self._take_info(slot, slot.pending)
                elif slot.info is None and time.monotonic() - slot.since > REFRESH_S:
                    slot.pending, slot.since = slot.handle.info.remote(), time.monotonic()

    def probe(self, timeout: float = PROBE_S) -> bool:
        """Whether the cluster's head answers now. A plain TCP connection, not a Ray call: Ray's own calls to a lost
        GCS wait instead of failing. Records when it stopped answering, and asks every free worker again when it
        is back."""
        if self.head is None:
            return True
        try:
            socket.create_connection(self.head, timeout=timeout).close()
        except OSError as error:
            with self.lock:
                if self.lost_since is None:
                    self.lost_since, self.lost_reason = time.time(), str(error.strerror or error)
                    print(
                        f"kinema: the Ray cluster's head {self.head[0]}:{self.head[1]} does not answer"
                        f" ({self.lost_reason}); queued jobs wait for it",
                        file=sys.stderr,
                    )
            return False
        with self.lock:
            if self.lost_since is not None:
                self.lost_since = None
                print("kinema: the Ray cluster's head answers again", file=sys.stderr)
                for slot in self.slots:
                    if slot.job is None and slot.pending is None:
                        with contextlib.suppress(Exception):
                            slot.pending, slot.since = slot.handle.info.remote(), time.monotonic()
        return True

    @property
    def lost(self) -> bool:
        return self.lost_since is not None

    def able(self, backend: str) -> list[Slot]:
        """Workers that could run ``backend`` when last heard of: one lost, or the whole cluster, is restarted by
        Ray and then asked again, so its jobs wait for it rather than fail."""
        with self.lock:
            return [slot for slot in self.slots if slot.can_run(backend, known=True)]

    def limits(self) -> dict[str, tuple[Limits, tuple[MemoryBound, ...]]]:
        """Each backend's limits and memory as its workers reported them, the smallest of each where they differ:
        a job accepted may run on whichever of them is free."""
        reports: dict[str, list[dict]] = {}
        with self.lock:
            for slot in self.slots:
                for name, backend in (slot.known or {}).get("backends", {}).items():
                    if backend.get("ready") and backend.get("limits"):
                        reports.setdefault(name, []).append(backend)
        combined = {}
        for name, found in reports.items():
            fields = {f: min(r["limits"][f] for r in found) for f in ("frames", "pixels", "steps", "seconds")}
            why = found[0]["limits"]["why"] if len(found) == 1 else "the smallest of the Ray workers' own limits"
            memory: dict[str, MemoryBound] = {}
            for report in found:
                for bound in (MemoryBound(**b) for b in report.get("memory", [])):
                    if bound.where not in memory or bound.total < memory[bound.where].total:
                        memory[bound.where] = bound
            combined[name] = (Limits(**fields, why=why), tuple(memory.values()))
        return combined

    def why_not(self, backend: str) -> str:
        with self.lock:
            details = sorted(
                {
                    slot.known["backends"][backend]["detail"]
                    for slot in self.slots
                    if slot.known is not None and backend in slot.known["backends"]
                }
            )
        return "; ".join(details) if details else "no worker has that backend installed"

    def pick(self, job_id: str, key: tuple) -> Slot | None:
        """A free worker for the job: the one still running it (a restarted server), else one holding its model
        (nothing to load), else the one whose unload costs least (``unload_cost``); None if all that can run it
        are busy."""
        with self.lock:
            free = [slot for slot in self.slots if slot.job is None and slot.can_run(key[0])]
            chosen = next((s for s in free if job_id in (s.info or {}).get("running", ())), None)
            chosen = chosen or next((s for s in free if s.holds(key)), None)
            if chosen is None and free:
                chosen = min(free, key=self.unload_cost)
            if chosen is not None:
                chosen.job = job_id
            return chosen

    def unload_cost(self, slot: Slot) -> tuple:
        """What switching ``slot`` to another model throws away, to be made as small as possible: nothing for a
        worker that holds nothing; nothing either for a copy of a model another worker also holds (the cluster
        keeps it); else the bytes of its model's weights, which a later job for that model loads again. Ties go to
        the worker unloaded sooner anyway: holding nothing, then the one idle longest."""
        info = slot.info or {}
        resident = info.get("resident") or []
        if not resident:
            return (0, 0, slot.used)
        copies = sum(1 for other in self.slots if other.info and resident[0] in other.info["resident"])
        lost = 0 if copies > 1 else int(info.get("resident_bytes") or 0)
        return (lost, 1, slot.used)

    def release(
        self, slot: Slot, *, resident: tuple | None = None, lost: bool = False, held: dict | None = None
    ) -> None:
        """The slot is free again; ``held`` is what its worker said it holds after the job (``Worker.held``), else
        ``resident`` is taken to be its model."""
        with self.lock:
            slot.job, slot.used = None, time.monotonic()
            if lost:
                slot.info, slot.since = None, time.monotonic()  # asked again once Ray has restarted it
            elif slot.info is not None and held is not None:
                slot.info = {**slot.info, **held, "running": []}
            elif resident is not None and slot.info is not None:
                slot.info = {**slot.info, "resident": [list(resident)], "running": []}

    def reports(self) -> list[dict]:
        """What each worker said last (the job it runs now included)."""
        with self.lock:
            return [{"name": s.name, "job": s.job, **(s.info or {"starting": True})} for s in self.slots]


def _consented(
    request: GenerationRequest, fields: dict, *, seconds: float | None = None
) -> tuple[cameo_store.Conditioning, dict | None]:
    """Consent for ``request``'s cameos, checked here (the server keeps the cameo store), and what its worker gets
    of them (``kinema.server.ray_cameos``); a speech line goes into ``fields`` as the samples loaded here (the
    server's file stays here). ``seconds``: how long a dialogue line may last (the clip's length)."""
    conditioning = cameo_store.prepare(request, seconds=seconds)
    share = for_worker(conditioning)  # only what generating needs of the cameos the requester may use
    if share is not None and request.speech is not None:
        fields["speech"] = conditioning.speech
    return conditioning, share


class _Detached(Exception):
    """The server is stopping: the job goes back to the queue and its worker keeps generating."""


class _Silent(Exception):
    """The cluster's head is lost and the job's worker has stopped answering: taken for lost."""


class _LaneLost(Exception):
    """A worker lent to a storyboard's shots was lost (``error``): the job runs again, as for its own worker."""

    def __init__(self, slot: Slot, error: BaseException):
        super().__init__(str(error))
        self.slot, self.error = slot, error


class _Either(CancelToken):
    """Cancelled by its own ``cancel()`` or when ``parent`` is: a film's shots stop when the job is cancelled, and
    when a sibling chain failed."""

    def __init__(self, parent: CancelToken):
        super().__init__()
        self.parent = parent

    @property
    def cancelled(self) -> bool:
        return self._event.is_set() or self.parent.cancelled

    def raise_if_cancelled(self) -> None:
        if self.cancelled:
            raise GenerationCancelled("generation cancelled")


def _owned(clip: Any) -> Any:
    """The clip with arrays of its own: Ray hands back read-only views of its object store, with the worker's
    strides, and the encoder then makes a slightly different file from the same frames than in-process."""
    clip.frames = np.ascontiguousarray(clip.frames).copy()
    if clip.audio is not None:
        clip.audio = np.ascontiguousarray(clip.audio).copy()
    return clip


def _lost_errors(ray: Any) -> tuple[type[BaseException], ...]:
    """What Ray raises when the worker running a job is gone."""
    return (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError, ray.exceptions.ObjectLostError)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


class RayJobManager(JobManager):
    """The job server's manager with generation on a Ray pool (``JobManager`` keeps the store, events and files)."""

    def __init__(
        self,
        home: Path | None = None,
        *,
        address: str = "auto",
        start_workers: bool = True,
        pool: Pool | None = None,
    ):
        super().__init__(home, start_workers=start_workers)
        self.address = address
        self.pool = pool or Pool()
        self._wake = threading.Event()
        self._dispatcher: threading.Thread | None = None
        self._watcher: threading.Thread | None = None
        self._threads: list[threading.Thread] = []
        self.silent_s = SILENT_S
        self._held: dict[str, dict] = {}  # a worker's name -> what it holds after its last job (its last poll)

    def start(self) -> RayJobManager:
        connect(self.address)
        self.pool.attach()
        self.pool.head = head_address(self.address)
        super().start()
        self._watcher = threading.Thread(target=self._watch, name="kinema-ray-watch", daemon=True)
        self._watcher.start()
        if self.start_workers:
            self._start_dispatcher()
        return self

    def health(self) -> dict:
        """The cluster as ``/health`` shows it: connected or lost (since when, and what to do), and its workers."""
        pool = self.pool
        with pool.lock:
            workers = len(pool.slots)
            ready = sum(1 for slot in pool.slots if slot.info is not None)
            busy = sum(1 for slot in pool.slots if slot.job is not None)
            lost_since, reason = pool.lost_since, pool.lost_reason
        report: dict[str, Any] = {
            "address": self.address,
            "state": "lost" if lost_since is not None else "connected",
            "workers": workers,
            "ready": ready,
            "busy": busy,
        }
        if lost_since is not None:
            head = f"{pool.head[0]}:{pool.head[1]}" if pool.head else self.address
            report["lost_since"] = int(lost_since)
            report["message"] = (
                f"the Ray cluster's head ({head}) has not answered since"
                f" {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(lost_since))} ({reason}): queued jobs wait for"
                " it, and a running job whose worker stops answering runs once more when it is back, else fails."
                " Start the head again; if it comes back without its state (no GCS fault tolerance), restart"
                " kinema serve too"
            )
        return report

    def stop(self, timeout: float = 10.0) -> None:
        """Stop dispatching; running jobs go back to the queue while their workers keep generating, so a server
        started again on this data directory collects their clips."""
        self._stopping.set()
        self._wake.set()
        with self._lock:  # jobs run here (remote backends) go back to the queue, as without --ray
            local = list(self._workers.values())
            running = [(job_id, live.token) for job_id, live in self._live.items() if live.token is not None]
        for job_id, token in running:
            record = self._jobs.get(job_id)
            if record is not None and record["device"] != DEVICE:
                token.cancel()
        deadline = time.monotonic() + timeout
        for worker in local:
            worker.wake.set()
        for thread in [self._dispatcher, self._watcher, *self._threads, *local]:
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
        if self.store is not None and not any(t.is_alive() for t in [*self._threads, *local]):
            self.store.close()
        self._release_lock()

    # -- what JobManager asks

    def submit(self, fields: dict, **kwargs: Any) -> dict:
        """As in-process, with every generation it plans checked against the limits and memory of the workers that
        can run it (their own reports), not this machine's: the server never generates."""
        with checked_elsewhere(self.pool.limits()):
            return super().submit(fields, **kwargs)

    def _backend_status(self, backend: Any, request: GenerationRequest) -> Any:
        if isinstance(backend, RemoteBackend):  # another server generates: its jobs run here, not on a worker
            return super()._backend_status(backend, request)
        able = self.pool.able(backend.name)
        if not able:
            model = f" (model {request.model})" if request.model else ""
            raise MissingWeightsError(
                f"no Ray worker can run {backend.name!r}{model}: {self.pool.why_not(backend.name)}. Put the model"
                " on every worker node (kinema models pull MODEL there, or a shared KINEMA_HOME/models) or install"
                " the backend's plugin there, then restart Ray on those nodes"
            )
        return BackendStatus(True, f"{len(able)} Ray worker(s) can run it", DEVICE)

    def _ensure_worker(self, device: str) -> Any:
        if device != DEVICE:  # a remote backend's jobs: the in-process worker of that device
            return super()._ensure_worker(device)
        self._start_dispatcher()
        return self  # the caller sets .wake

    @property
    def wake(self) -> threading.Event:
        return self._wake

    # -- dispatching

    def _start_dispatcher(self) -> None:
        with self._lock:
            if self._dispatcher is None or not self._dispatcher.is_alive():
                self._dispatcher = threading.Thread(target=self._dispatch, name="kinema-ray-dispatch", daemon=True)
                self._dispatcher.start()

    def _watch(self) -> None:
        while not self._stopping.is_set():
            lost = self.pool.lost
            if not self.pool.probe() or lost:  # lost, or back: the dispatcher looks again
                self._wake.set()
            self._stopping.wait(PROBE_S)

    def _dispatch(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                self.pool.refresh()
                started = False if self.pool.lost else self._dispatch_one()  # queued jobs wait for the cluster
            except Exception:
                traceback.print_exc()
                started = False
            if not started:
                self._wake.wait(1.0)

    def _dispatch_one(self) -> bool:
        """Start the oldest queued job on a suitable free worker; False if there is none to start."""
        for device in sorted(self._jobs.queued_devices() & {DEVICE}):
            record = self._jobs.claim(device)
            if record is None:
                continue
            request = record["request"]
            key = (request["backend"], request["model"])
            if not self.pool.able(key[0]):
                self._jobs.finish(
                    record["id"],
                    "failed",
                    code="model_not_found",
                    message=f"no Ray worker can run {key[0]!r}: {self.pool.why_not(key[0])}",
                )
                self._publish_final(record["id"])
                return True
            slot = self.pool.pick(record["id"], key)
            if slot is None:  # every worker that can run it is busy: back in line, this attempt not counted
                self._jobs.requeue(record["id"])
                return False
            thread = threading.Thread(target=self._run_guarded, args=(record, slot), name=f"kinema-ray-{slot.name}")
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            thread.start()
            return True
        return False

    def _run_guarded(self, record: dict, slot: Slot) -> None:
        try:
            self._run_remote(record, slot)
        except Exception:  # a bug in bookkeeping must not kill the pool
            traceback.print_exc()
            with contextlib.suppress(Exception):
                self.pool.release(slot)
                self._jobs.finish(record["id"], "failed", code="internal_error", message="internal error; see its log")
                self._publish_final(record["id"])
        finally:
            self._wake.set()

    def _run_remote(self, record: dict, slot: Slot) -> None:
        ray = _ray()
        job_id = record["id"]
        token = CancelToken()
        with self._lock:
            live = self._live.setdefault(job_id, _Live())
            live.token, live.step, live.total, live.stage = token, 0, record["plan"]["steps"], ""
            live.history, live.preview = [], None
        current = self._jobs.get(job_id)
        if current is None or current["cancel_requested"]:
            token.cancel()
        self._publish(job_id, "video", self._with_live(record))
        folder = self.directory / job_id
        key = (record["request"]["backend"], record["request"]["model"])
        lost = film = False
        try:
            task = record["plan"].get("task")
            image = read_image(folder / INPUT_FILE) if record["has_image"] else None
            request = GenerationRequest(**record["request"], image=image)
            fields = dict(record["request"])
            # A film's shots are checked each as it starts (_film); a dialogue line lasts the clip, as in-process.
            conditioning, share = _consented(request, fields, seconds=record["plan"].get("seconds"))
            source = self._task_source(job_id, task)
            token.raise_if_cancelled()
            if task and task["kind"] == "storyboard":
                film = True
                clip = self._film(ray, slot, job_id, request, task, token)
            else:
                clip = self._generate_remote(
                    ray,
                    slot,
                    job_id,
                    fields,
                    image,
                    token,
                    task,
                    source.read_bytes() if source else None,
                    share,
                    (request, conditioning) if conditioning.cameos else None,
                )
            if source is not None and isinstance(clip.metadata.get("parent"), dict):
                # The worker built on its own copy: the lineage names the server's clip, as in-process (and the
                # signature below embeds it as an ingredient when it is still the same file).
                clip.metadata["parent"]["path"] = str(source.resolve())
            cameo_store.recheck(request, conditioning)  # and again before the clip is kept
            cameo_store.finish(request, clip, conditioning)  # scored and logged here, with the cameo store
            token.raise_if_cancelled()
            clip.save(folder / VIDEO_FILE)  # signed here, with the server's key; written atomically
            atomic_write(folder / THUMBNAIL_FILE, encode_png(clip.frames[clip.frame_count // 2]))
            atomic_write(folder / SPRITESHEET_FILE, encode_jpeg(spritesheet(clip.frames), 85))
            if not self._jobs.finish(job_id, "completed", unless_cancel_requested=True):
                raise GenerationCancelled("cancelled")
        except _Detached:
            self._jobs.requeue(job_id)
        except GenerationCancelled:
            self._jobs.finish(job_id, "cancelled", code="cancelled", message="cancelled by request")
        except _lost_errors(ray) as e:
            lost = True
            self._lost(job_id, slot, e)
        except _Silent as silent:  # the worker keeps its last report: it is asked again when the head is back
            self._lost(job_id, slot, silent)
        except _LaneLost as lane:  # a worker lent to a storyboard's shots: the job's own worker is still there
            self._lost(job_id, lane.slot, lane.error)
        except Exception as error:
            cause = getattr(error, "cause", None)  # a RayTaskError carries the worker's exception
            if isinstance(cause, GenerationCancelled):
                self._jobs.finish(job_id, "cancelled", code="cancelled", message="cancelled by request")
            else:
                code, message = _describe_failure(cause if isinstance(cause, Exception) else error)
                if code == "internal_error":
                    print(f"kinema: job {job_id} failed on {slot.where}:", file=sys.stderr)
                    traceback.print_exc()
                self._jobs.finish(job_id, "failed", code=code, message=message)
        finally:
            held = self._held.pop(slot.name, None)  # a film's: None when no shot ran on it (all cached, or lent out)
            self.pool.release(slot, resident=None if lost or film else key, lost=lost, held=held)
            with self._lock:
                live.token = None
                live.history, live.preview = [], None
        self._purge_if_deleted(job_id)
        self._publish_final(job_id)

    def _task_source(self, job_id: str, task: dict | None) -> Path | None:
        """The server's clip a remix or extend builds on (None for other jobs); gone is a clear failure."""
        if not task or task["kind"] not in ("remix", "extend"):
            return None
        path = self._source(job_id, task["parent"])
        if path is None:
            raise InvalidRequestError(f"video {task['parent']!r} was deleted before this {task['kind']} could run")
        return path

    def _generate_remote(
        self,
        ray: Any,
        slot: Slot,
        job_id: str,
        fields: dict,
        image: Any,
        token: CancelToken,
        task: dict | None = None,
        source: bytes | None = None,
        share: dict | None = None,
        consent: tuple | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        detach: bool = True,
    ) -> Any:
        """The worker's clip; ``consent`` (request, conditioning) is asked again every CONSENT_S while it runs.
        What the worker holds afterwards (its last poll) goes into ``self._held[slot.name]`` for ``Pool.release``.
        ``on_progress`` gets its step events (default: the job's); ``detach=False`` stops the worker too when the
        server stops (a film's shot: the film starts again from the shot cache)."""
        publish = on_progress or (lambda event: self._on_progress(job_id, event))
        result = slot.handle.run.remote(job_id, fields, image, task, source, share)
        since = preview_seq = 0
        cancelled = False
        answered = asked = time.monotonic()
        while True:
            if consent is not None and time.monotonic() - asked > CONSENT_S:
                asked = time.monotonic()
                try:
                    cameo_store.recheck(*consent)
                except Exception:  # revoked (or expired) mid-job: the worker stops, the job fails saying why
                    slot.handle.cancel.remote(job_id)
                    ray.wait([result], timeout=START_TIMEOUT_S)  # within a step; its slot is free only then
                    slot.handle.forget.remote(job_id)
                    raise
            done, _ = ray.wait([result], timeout=POLL_S)
            with contextlib.suppress(ray.exceptions.RayError):  # a lost worker shows in the result
                events, preview, preview_seq, held = ray.get(
                    slot.handle.poll.remote(job_id, since, preview_seq), timeout=max(5.0, 10 * POLL_S)
                )
                if done:  # asked after the result was ready: what the worker holds now the job is over
                    self._held[slot.name] = held
                answered = time.monotonic()
                since += len(events)
                for n, (step, total, stage) in enumerate(events):
                    last = n == len(events) - 1
                    publish(Progress(step, total, stage, preview if last else None))
            if done:
                try:
                    return _owned(ray.get(result))
                finally:
                    with contextlib.suppress(ray.exceptions.RayError):
                        slot.handle.forget.remote(job_id)
            if self._stopping.is_set():
                if not detach:
                    slot.handle.cancel.remote(job_id)
                raise _Detached()
            # Ray learns that an actor died from its GCS: with the head lost, a dead worker's result never comes.
            silent = time.monotonic() - answered
            if self.pool.lost and silent > self.silent_s and not done:
                raise _Silent(
                    f"it has not answered for {silent:.0f} s while the Ray cluster's head is unreachable"
                    f" ({self.pool.lost_reason})"
                )
            if token.cancelled and not cancelled:
                slot.handle.cancel.remote(job_id)  # the worker stops at its next step
                cancelled = True

    def _film(
        self, ray: Any, own: Slot, job_id: str, request: GenerationRequest, task: dict, token: CancelToken
    ) -> Any:
        """A storyboard made here with its shots on workers, the film assembled here in shot order.

        Shots that share nothing (``kinema.storyboard.run.shot_chains``: a hard cut starts a chain, a continue shot
        needs the previous shot's last frame) run at once: the job's own worker takes the first chain, and each
        other chain a worker lent to the film while one is free and no other job waits for it (a lent worker goes
        back when one does). Shots come from, and go to, the server's shot cache, so a film run again (a lost
        worker, a restarted server) makes only what is missing. One chain failing stops the others.
        """
        backend = engine.resolve_backend(request)  # it plans the shots here; the workers load the model
        key = (request.backend, request.model)
        stop = _Either(token)  # a chain failed: the others stop within a step

        def maker(slot: Slot) -> ShotMaker:
            def make(shot: GenerationRequest, on_progress: Callable[[Progress], None]) -> Any:
                fields = {f.name: getattr(shot, f.name) for f in dataclasses.fields(shot) if f.name != "image"}
                run_id = f"{job_id}-{cache_key(shot, backend)[:16]}"  # the same shot gets the same id
                # A shot naming cameos is one use of them, as engine.generate makes it in-process: consent when
                # it starts, while it runs and before it is kept; its use logged once, here (a cached shot is
                # not made again, so a film run again logs nothing twice).
                conditioning, share = _consented(shot, fields, seconds=backend.plan(shot).seconds)
                consent = (shot, conditioning) if conditioning.cameos else None
                try:
                    clip = self._generate_remote(
                        ray,
                        slot,
                        run_id,
                        fields,
                        shot.image,
                        stop,
                        share=share,
                        consent=consent,
                        on_progress=on_progress,
                        detach=False,
                    )
                except ray.exceptions.RayTaskError as error:  # the worker's own error, as in-process
                    if isinstance(error.cause, KinemaError):
                        raise error.cause from None
                    raise
                cameo_store.recheck(shot, conditioning)
                cameo_store.finish(shot, clip, conditioning)
                return clip

            return make

        def run_chains(chains: list[Chain]) -> None:
            pending = deque(chains)
            lock = threading.Lock()
            errors: list[BaseException] = []
            lent: list[threading.Thread] = []

            def waiting() -> bool:
                return DEVICE in self._jobs.queued_devices()

            def lane(slot: Slot, borrowed: bool) -> None:
                try:
                    while not stop.cancelled and not (borrowed and waiting()):
                        with lock:
                            if not pending:
                                return
                            chain = pending.popleft()
                        if not borrowed:
                            borrow()
                        chain(maker(slot))
                except BaseException as error:
                    lost = borrowed and isinstance(error, (*_lost_errors(ray), _Silent))
                    errors.append(_LaneLost(slot, error) if lost else error)
                    stop.cancel()
                    if lost:
                        self.pool.release(slot, lost=True)
                        borrowed = False
                finally:
                    if borrowed:
                        self.pool.release(slot, held=self._held.pop(slot.name, None))
                        self._wake.set()

            def borrow() -> None:
                with lock:
                    wanted = len(pending)  # the chains left once the own worker has taken its next one
                for n in range(wanted):
                    slot = None if waiting() else self.pool.pick(f"{job_id}-lent-{n}", key)
                    if slot is None:
                        return
                    thread = threading.Thread(target=lane, args=(slot, True), name=f"kinema-ray-{slot.name}")
                    lent.append(thread)
                    thread.start()

            lane(own, False)
            for thread in lent:
                thread.join()
            if errors:
                raise errors[0]  # the first: the others are the stops it caused

        return run_task(
            task,
            request,
            backend,
            parent_video=lambda parent: None,
            progress=lambda event: self._on_progress(job_id, event),
            cancel=stop,  # between shots too: a chain stops when the job is cancelled or another chain failed
            run_chains=run_chains,
        )

    def _lost(self, job_id: str, slot: Slot, error: BaseException) -> None:
        reason = f"the Ray worker running it ({slot.where}) was lost: {_first_line(error)}"
        if self.pool.lost and not isinstance(error, _Silent):
            reason += f"; the Ray cluster's head is unreachable ({self.pool.lost_reason})"
        print(f"kinema: job {job_id}: {reason}", file=sys.stderr)
        current = self._jobs.get(job_id)
        if current is not None and current["cancel_requested"]:
            self._jobs.finish(job_id, "cancelled", code="cancelled", message="cancelled by request")
        elif current is not None and current["attempts"] < MAX_ATTEMPTS and self._jobs.retry(job_id):
            self._wake.set()  # runs once more, on another worker
        else:
            attempts = current["attempts"] if current else MAX_ATTEMPTS
            self._jobs.finish(job_id, "failed", code="worker_lost", message=f"{reason}; tried {attempts} times")


__all__ = ["Pool", "RayJobManager", "RayUnavailableError", "WorkerVersionError", "connect", "head_address"]
