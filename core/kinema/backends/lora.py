"""LoRA weights for one generation: loaded into the pipeline before, removed after.

Pipelines stay loaded between jobs (``kinema.backends.loading``), so a LoRA left in
place would leak into the next clip. Loading goes through diffusers'
``load_lora_weights`` (LTX-2 and Wan pipelines have it), which needs ``peft``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from kinema.errors import InvalidRequestError, MissingWeightsError


def adapter_names(loras: Sequence[tuple[str, float]]) -> list[str]:
    """The adapter names ``loras_loaded`` gives ``loras`` on a pipeline, in order."""
    return [f"kinema_lora_{index}" for index in range(len(loras))]


@contextlib.contextmanager
def loras_loaded(pipe: Any, loras: Sequence[tuple[str, float]], backend: str) -> Iterator[None]:
    """Run the body with ``loras`` ((path, weight), ...) active on ``pipe``; a no-op without any."""
    if not loras:
        yield
        return
    if not callable(getattr(pipe, "load_lora_weights", None)):
        raise InvalidRequestError(
            f"backend {backend!r} cannot load LoRA weights; use a style without 'loras' or another backend"
        )
    try:
        import peft  # noqa: F401 - diffusers needs it to inject LoRA layers
    except ImportError:
        raise InvalidRequestError("LoRA weights need the peft package: pip install 'kinema[lora]'") from None
    names: list[str] = []
    try:
        for index, (path, _) in enumerate(loras):
            if not Path(path).is_file():
                raise MissingWeightsError(
                    f"LoRA {path} does not exist; put the .safetensors file there"
                    " (relative paths in a style start at the style file's folder)"
                )
            name = adapter_names(loras)[index]
            try:
                pipe.load_lora_weights(str(path), adapter_name=name)
            except (ValueError, KeyError, RuntimeError, OSError) as error:
                raise InvalidRequestError(f"LoRA {path} does not fit {backend!r}'s model: {error}") from None
            names.append(name)
        pipe.set_adapters(names, adapter_weights=[weight for _, weight in loras])
        yield
    finally:
        if names:
            pipe.unload_lora_weights()
