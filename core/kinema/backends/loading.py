"""Loaded pipelines, kept between jobs and released together when memory is wanted elsewhere."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from kinema.backends import memory
from kinema.backends.device import release
from kinema.backends.memory import place, requested

_lock = threading.Lock()
_loaded: dict[tuple[str, ...], tuple[Any, str]] = {}


def load_pipeline(pipeline_cls: Any, path: Path, device: str, dtype: Any, policy: str = "auto") -> tuple[Any, str]:
    """Load (once) a diffusers pipeline from a local folder; returns it and the memory policy it runs under."""
    policy = requested(policy)  # KINEMA_MEMORY counts as a different placement, so it takes effect at once
    key = (pipeline_cls.__name__, str(path), device, str(dtype), policy)
    with _lock:
        if key in _loaded:
            return _loaded[key]
        pipe = _from_pretrained(pipeline_cls, path, dtype)
        placement = place(pipe, device, policy)
        _loaded[key] = (pipe, placement)
        return pipe, placement


def _from_pretrained(pipeline_cls: Any, path: Path, dtype: Any) -> Any:
    quiet_libraries()
    if Path(path).is_file():  # a single-file checkpoint (ComfyUI's models/checkpoints and the like)
        from kinema.backends import single_file

        pipe = single_file.load_pipeline(pipeline_cls, path, dtype)
    else:
        # safetensors only and local files only: nothing is fetched or executed from the folder.
        pipe = pipeline_cls.from_pretrained(path, dtype=dtype, use_safetensors=True, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    pipe._kinema_source = (pipeline_cls, path, dtype)
    return pipe


def step_down(pipe: Any) -> str | None:
    """Put ``pipe`` under the next lighter memory policy; return what was done, or None if nothing is lighter.

    A pipeline without offload or fp8 hooks is changed in place; one with hooks
    (which cannot be taken off cleanly) is loaded again from its folder, and
    later jobs get the new one from this cache.
    """
    name, device = memory.current(pipe)
    device = device or str(pipe.device)
    old = memory.get_policy(name, device)
    new = memory.lighter(old, device)
    if new is None:
        return None
    with _lock:
        key = next((key for key, (loaded_pipe, _placement) in _loaded.items() if loaded_pipe is pipe), None)
        if memory.has_hooks(old.name):
            source = getattr(pipe, "_kinema_source", None)
            if key is None or source is None:
                return None  # hooks we cannot undo on a pipeline we cannot reload
            del _loaded[key]
            pipe = None
            release(device)
            pipe = _from_pretrained(*source)
        elif new.offload != "none":
            pipe.to("cpu")
            release(device)
        memory.apply(pipe, new, device)
        if key is not None:
            _loaded[key] = (pipe, new.name)
    return memory.step_down_note(old.name, new)


def quiet_libraries() -> None:
    """Hosts show kinema's own progress; the libraries' per-file loading bars and notices are noise there."""
    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging

    for logging in (diffusers_logging, transformers_logging):
        logging.disable_progress_bar()
        logging.set_verbosity_error()


def release_all(device: str | None = None) -> None:
    """Forget every loaded pipeline, or only those on ``device``, and hand the memory back (ComfyUI calls this when
    it frees models; a job server's worker when it switches models, for its own device only: another device's
    worker keeps its model)."""
    with _lock:
        dropped = [key for key in _loaded if device is None or key[2] == device]
        for key in dropped:
            del _loaded[key]
    devices: set[str | None] = {key[2] for key in dropped}
    for each in devices or {device}:
        release(each)


def loaded() -> list[str]:
    with _lock:
        return [f"{cls} from {path} on {device}" for cls, path, device, *_options in _loaded]


def loaded_pipelines() -> list[tuple[Any, str, str]]:
    """Every loaded pipeline with its device and placement (hosts account for the memory they hold)."""
    with _lock:
        return [(pipe, key[2], placement) for key, (pipe, placement) in _loaded.items()]
