"""Model downloads the server runs for its hosts (``POST /v1/models/pulls``), one at a time, polled for progress.

A host (Blender's add-on preferences) shows a model's licence from ``GET /v1/models``, asks the user to accept it,
then asks the server to pull: the weights land where ``kinema models pull`` puts them, with the same licence
check before any network call and the same record of what was accepted. Pulls are kept in memory: a server
that restarts forgets them, and pulling again resumes what had come (``kinema.models.pull``).
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time

from kinema import licences
from kinema import models as model_store
from kinema.errors import KinemaError
from kinema.home import kinema_home
from kinema.server.errors import hide_paths

ACTIVE = ("queued", "downloading")


@dataclasses.dataclass
class Pull:
    model: str
    revision: str | None
    accept_license: bool
    status: str = "queued"  # queued, downloading, completed, failed
    done: float = 0.0
    total: float | None = None
    unit: str = "B"
    created_at: int = dataclasses.field(default_factory=lambda: int(time.time()))
    completed_at: int | None = None
    error: dict | None = None

    def as_dict(self) -> dict:
        """The ``ModelPull`` the API answers with."""
        progress = 1.0 if self.status == "completed" else min(1.0, self.done / self.total) if self.total else None
        in_bytes = self.unit == "B" and self.status != "queued"
        folder = model_store.local_dir_for(self.model) if self.status == "completed" else None
        return {
            "object": "model.pull",
            "model": self.model,
            "revision": self.revision,
            "status": self.status,
            "progress": progress,
            "downloaded_bytes": int(self.done) if in_bytes else None,
            "total_bytes": int(self.total) if in_bytes and self.total else None,
            "created_at": self.created_at,
            "completed_at": self.completed_at,
            "error": self.error,
            "licence": licences.listing(self.model, folder),
        }


def embedded(model: str) -> bool:
    """``kinema/...`` names kinema's own embedded models, which ship with it and are never downloaded."""
    return model.lower().startswith("kinema/")


class ModelPulls:
    """The server's downloads: a queue and one thread that works through it, started on the first pull.

    ``paused``: queue pulls without running them (a server whose job workers are paused, for schema fuzzing).
    """

    def __init__(self, *, paused: bool = False) -> None:
        self.paused = paused
        self._lock = threading.Lock()
        self._pulls: dict[str, Pull] = {}
        self._queue: queue.SimpleQueue[Pull] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self, model: str, *, revision: str | None, accept_license: bool) -> tuple[Pull, bool]:
        """Queue a pull of ``model``; returns (the pull, whether it is new). A pull of the same model still under
        way is returned as it is. Raises ``LicenceNotAcceptedError`` first if its licence must be accepted."""
        licences.require_accepted(model, accept_license)  # before anything is queued, let alone downloaded
        with self._lock:
            current = self._pulls.get(model)
            if current is not None and current.status in ACTIVE:
                return current, False
            pull = Pull(model, revision, accept_license)
            self._pulls[model] = pull
            if not self.paused:
                self._queue.put(pull)
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._work, name="kinema-model-pulls", daemon=True)
                    self._thread.start()
            return pull, True

    def get(self, model: str) -> Pull | None:
        with self._lock:
            return self._pulls.get(model)

    def all(self) -> list[Pull]:
        with self._lock:
            return sorted(self._pulls.values(), key=lambda pull: (pull.created_at, pull.model))

    def _work(self) -> None:
        while True:
            try:
                pull = self._queue.get(timeout=5)
            except queue.Empty:
                with self._lock:  # the next start() sees a dead thread and makes a new one
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            self._run(pull)

    def _run(self, pull: Pull) -> None:
        def progress(done: float, total: float | None, unit: str) -> None:
            pull.done, pull.total, pull.unit = done, total, unit

        pull.status = "downloading"
        try:
            download(pull.model, revision=pull.revision, accept_license=pull.accept_license, progress=progress)
        except KinemaError as error:
            pull.error = {
                "message": hide_paths(str(error), kinema_home()),
                "type": "server_error",
                "code": "pull_failed",
            }
            pull.status = "failed"
        except Exception as error:  # noqa: BLE001 - a bug must end this pull, not the thread that runs them all
            message = f"pulling {pull.model} failed ({type(error).__name__}: {error})"
            pull.error = {"message": hide_paths(message, kinema_home()), "type": "server_error", "code": "pull_failed"}
            pull.status = "failed"
        else:
            pull.status = "completed"
        pull.completed_at = int(time.time())


def download(
    model: str, *, revision: str | None, accept_license: bool, progress: model_store.PullProgress | None = None
) -> None:
    """What ``kinema models pull`` does: a cameo face model (ONNX) or a diffusers pipeline, with its licence record."""
    from kinema.cameo.face import KNOWN_FACE_MODELS, pull_face_model

    if model in KNOWN_FACE_MODELS:
        try:
            path = pull_face_model(model, revision=revision)
        except KinemaError:
            raise
        except Exception as error:  # noqa: BLE001 - huggingface_hub's errors, as one line
            raise KinemaError(model_store.download_problem(model, revision, error)) from error
        licences.record(path.parent, model, accept_license)
        return
    model_store.pull(model, revision=revision, accept_license=accept_license, progress=progress)
