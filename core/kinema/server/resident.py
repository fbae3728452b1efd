"""The one model a job worker keeps loaded between jobs, and the switch to another that really frees it.

Both kinds of worker use it: the in-process server's thread per device (``kinema.server.jobs``) and a Ray worker
(``kinema.server.ray_worker``). A job for the model already held loads nothing; a job for another model unloads the
old one first. Backends leave their pipelines in kinema's load cache (``kinema.backends.loading``) for the next
job, so unloading also drops the cache's pipelines on the worker's device: else a server that ran model A and then
model B would hold both.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from kinema import engine
from kinema.backends.loading import release_all
from kinema.request import GenerationRequest


class Resident:
    """The backend of a worker's last job, kept for the next one. ``device``: the device whose cached pipelines a
    switch drops (None: every device's, for a worker that is the only one in its process)."""

    def __init__(self, device: str | None = None):
        self.device = device
        self.key: tuple | None = None  # (backend, model) of the resident model
        self.backend: Any = None
        self.loads = 0  # how many times a model was taken on (a job for the resident model takes none)

    def backend_for(self, request: GenerationRequest, check: Callable[[Any], None] | None = None) -> Any:
        """The backend for ``request``: the resident one if it runs the same model, else a new one, the old one
        unloaded first. ``check`` sees a new backend before it becomes resident, and may refuse it by raising."""
        key = (request.backend, request.model)
        if key != self.key:
            self.release()
            backend = engine.resolve_backend(request)
            if check is not None:
                check(backend)
            self.backend, self.key = backend, key
            self.loads += 1
        return self.backend

    def release(self) -> None:
        """Unload the resident model, if any, and give its memory back."""
        if self.backend is not None:
            with contextlib.suppress(Exception):  # a failing unload must not stop the next model
                self.backend.unload()
            release_all(self.device)
        self.backend, self.key = None, None


__all__ = ["Resident"]
