"""Request in, clip out: backend lookup, planning, progress, cancellation and metadata."""

from __future__ import annotations

import time
from typing import Callable, Optional

from .backends.base import Backend, Plan
from .clip import Clip
from .errors import GenerationCancelled, InvalidRequestError, UnknownBackendError
from .plugins import load_plugins
from .progress import CancelToken, Progress
from .request import GenerationRequest


def get_backends() -> dict[str, Backend]:
    """Every registered backend by name and alias. Rebuilt per call, so newly registered plugins count at once."""
    backends: dict[str, Backend] = {}

    def register(backend: Backend, aliases: tuple[str, ...] = ()) -> None:
        for name in (backend.name, *aliases):
            backends.setdefault(name, backend)

    load_plugins().hook.register_backends(register=register)
    return backends


def get_backend(name: str) -> Backend:
    backends = get_backends()
    try:
        return backends[name]
    except KeyError:
        names = ", ".join(sorted({b.name for b in backends.values()}))
        raise UnknownBackendError(f"unknown backend {name!r}; choose one of: {names} (see `kinema backends`)") from None


def resolve_backend(request: GenerationRequest) -> Backend:
    backend = get_backend(request.backend)
    if request.model and request.model != backend.model_id:
        for_model = getattr(backend, "for_model", None)
        if for_model is None:
            raise InvalidRequestError(f"backend {backend.name!r} runs only its built-in model; drop --model")
        backend = for_model(request.model)
    return backend


def plan(request: GenerationRequest, backend: Optional[Backend] = None) -> Plan:
    return (backend or resolve_backend(request)).plan(request)


def generate(
    request: GenerationRequest,
    *,
    progress: Optional[Callable[[Progress], None]] = None,
    cancel: Optional[CancelToken] = None,
    backend: Optional[Backend] = None,
) -> Clip:
    """Generate one clip. ``progress`` gets every step; ``cancel`` stops within one step.

    Raises ``GenerationCancelled`` when cancelled; memory is released either way
    and the next call works.
    """
    from . import __version__
    from .device import release
    from .styles import apply_style

    request = apply_style(request)
    backend = backend or resolve_backend(request)
    the_plan = backend.plan(request)
    cancel = cancel or CancelToken()
    hook = load_plugins().hook

    def on_progress(event: Progress) -> None:
        if progress is not None:
            progress(event)
        hook.generation_progress(request=request, progress=event)

    started = time.time()
    try:
        cancel.raise_if_cancelled()
        clip = backend.generate(request, the_plan, progress=on_progress, cancel=cancel)
    except GenerationCancelled:
        release()
        raise
    clip.metadata.update(
        {
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt,
            "style": request.style,
            "seed": the_plan.seed,
            "steps": the_plan.steps,
            "guidance": the_plan.guidance,
            "width": the_plan.width,
            "height": the_plan.height,
            "num_frames": the_plan.num_frames,
            "fps": str(the_plan.fps),
            "audio": clip.audio is not None,
            "backend": backend.name,
            "model": backend.model_id,
            "first_frame_image": request.image is not None,
            "kinema_version": __version__,
            "created_at": int(started),
            "generation_seconds": round(time.time() - started, 3),
            "notes": list(the_plan.notes),
        }
    )
    hook.clip_generated(request=request, clip=clip)
    return clip
