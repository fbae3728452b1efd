"""Request in, clip out: backend lookup, planning, progress, cancellation and metadata."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any

from kinema import models
from kinema.backends.base import Backend, Plan
from kinema.backends.device import release
from kinema.backends.memory import retry_lighter_on_oom
from kinema.cameo import store as cameos
from kinema.clip import Clip
from kinema.errors import GenerationCancelled, InvalidRequestError
from kinema.plugins import get_backend, get_backends, load_plugins
from kinema.progress import CancelToken, Progress
from kinema.request import GenerationRequest
from kinema.styles import apply_style
from kinema.tiers import distilled_model
from kinema.version import __version__

# The backend registry lives with the plugin manager (kinema.plugins), where kinema.styles reads it too;
# kinema.engine.get_backend(s) stay the names callers and plugins use.
__all__ = ["generate", "get_backend", "get_backends", "plan", "resolve_backend"]


def resolve_backend(request: GenerationRequest) -> Backend:
    backend = get_backend(request.backend)
    if request.model and request.model != backend.model_id:
        for_model = getattr(backend, "for_model", None)
        if for_model is None:
            raise InvalidRequestError(f"backend {backend.name!r} runs only its built-in model; drop --model")
        backend = for_model(request.model)
    elif not request.model and not getattr(backend, "is_demo", False):
        backend = _distilled_for_tier(backend, request.tier)
    return backend


def _distilled_for_tier(backend: Backend, tier: str) -> Backend:
    """The tier's distilled checkpoint for this family when it is already on this machine (never downloaded)."""
    distilled = distilled_model(tier, getattr(backend, "family", ""))
    for_model = getattr(backend, "for_model", None)
    if distilled and for_model is not None and models.is_present(distilled["model"]):
        return for_model(distilled["model"])
    return backend


def plan(request: GenerationRequest, backend: Backend | None = None) -> Plan:
    return (backend or resolve_backend(request)).plan(request)


def generate(
    request: GenerationRequest,
    *,
    progress: Callable[[Progress], None] | None = None,
    cancel: CancelToken | None = None,
    backend: Backend | None = None,
    preview: bool = False,
    conditioning: cameos.Conditioning | None = None,
) -> Clip:
    """Generate one clip. ``progress`` gets every step; ``cancel`` stops within one step.

    ``preview=True`` asks the backend for a small RGB picture of the current
    latent with each step (``Progress.preview``); hosts with a live view ask,
    the CLI and server do not pay for it. Raises ``GenerationCancelled`` when
    cancelled; memory is released either way and the next call works.

    ``conditioning``: the request's cameos and speech as its caller already consented and loaded them (a Ray
    worker gets them from the server, which keeps the cameo store): this machine's store is then not read, and
    checking consent again and logging the use are the caller's.
    """
    request = apply_style(request)
    backend = backend or resolve_backend(request)
    the_plan = backend.plan(request)
    backend.require_weights(request)  # missing weights: refused now, before diffusers loads
    # Consent is checked here, when the job actually starts: a cameo revoked while the job was queued stops it.
    given = conditioning is not None
    if conditioning is None:
        conditioning = cameos.prepare(request, seconds=the_plan.seconds)  # a dialogue line lasts the clip
    cancel = cancel or CancelToken()
    hook = load_plugins().hook

    def on_progress(event: Progress) -> None:
        if progress is not None:
            progress(event)
        hook.generation_progress(request=request, progress=event)

    started = time.time()
    memory_notes: list[str] = []
    try:
        cancel.raise_if_cancelled()
        # Asked only of backends that take it: a preview is a nicety, and backends written before previews
        # (or that cannot make them) keep working when a host asks for one.
        options: dict[str, Any] = {"preview": True} if preview and _accepts(backend.generate, "preview") else {}
        if conditioning:
            options["conditioning"] = conditioning
        # Out of memory: one retry under the next lighter memory policy, noted in the clip.
        clip = retry_lighter_on_oom(
            lambda: backend.generate(request, the_plan, progress=on_progress, cancel=cancel, **options),
            getattr(backend, "lighten_memory", None),
            memory_notes,
        )
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
            # What the clip holds: the plan's values for local backends, the far side's for a remote one.
            "width": clip.width,
            "height": clip.height,
            "num_frames": clip.frame_count,
            "fps": str(clip.fps),
            "audio": clip.audio is not None,
            "backend": backend.name,
            "model": backend.model_id,
            "first_frame_image": request.image is not None,
            "kinema_version": __version__,
            "created_at": int(started),
            "generation_seconds": round(time.time() - started, 3),
            "notes": [*the_plan.notes, *memory_notes, *clip.metadata.get("notes", ())],
            "tier": the_plan.tier,
        }
    )
    clip.metadata.setdefault("cache", None)  # backends that cached said how; None: every block ran every step
    if not given:
        cameos.recheck(request, conditioning)  # a revoke during generation: the clip is not handed over
        cameos.finish(request, clip, conditioning)
    hook.clip_generated(request=request, clip=clip)
    return clip


def _accepts(function: Callable[..., Any], keyword: str) -> bool:
    parameters = inspect.signature(function).parameters
    return keyword in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())
