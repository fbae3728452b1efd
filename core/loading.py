"""Loaded pipelines, kept between jobs and released together when memory is wanted elsewhere."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from .device import place, release

_lock = threading.Lock()
_loaded: dict[tuple[str, str, str], tuple[Any, str]] = {}


def load_pipeline(pipeline_cls: Any, path: Path, device: str, dtype: Any) -> tuple[Any, str]:
    """Load (once) a diffusers pipeline from a local folder; returns it and the placement policy used."""
    key = (pipeline_cls.__name__, str(path), device)
    with _lock:
        if key in _loaded:
            return _loaded[key]
        quiet_libraries()
        # safetensors only and local files only: nothing is fetched or executed from the folder.
        pipe = pipeline_cls.from_pretrained(path, dtype=dtype, use_safetensors=True, local_files_only=True)
        pipe.set_progress_bar_config(disable=True)
        policy = place(pipe, device)
        _loaded[key] = (pipe, policy)
        return pipe, policy


def quiet_libraries() -> None:
    """Hosts show kinema's own progress; the libraries' per-file loading bars and notices are noise there."""
    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging

    for logging in (diffusers_logging, transformers_logging):
        logging.disable_progress_bar()
        logging.set_verbosity_error()


def release_all() -> None:
    """Forget every loaded pipeline and hand the memory back (ComfyUI calls this when it frees models)."""
    with _lock:
        devices = {key[2] for key in _loaded}
        _loaded.clear()
    for device in devices or {None}:
        release(device)


def loaded() -> list[str]:
    with _lock:
        return [f"{cls} from {path} on {device}" for cls, path, device in _loaded]
