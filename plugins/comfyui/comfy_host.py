"""ComfyUI's side of the nodes: progress bar and previews, interrupt, model folders and the shared memory manager.

Imported only inside ComfyUI (it imports ``comfy``); ``logic.py`` reaches it
through the small host object defined here.

Memory: kinema keeps loaded pipelines between runs (``kinema.backends.loading``).
ComfyUI frees memory by walking ``comfy.model_management.current_loaded_models``
and asking each ``LoadedModel`` to unload: when a native model needs VRAM
(``free_memory``), and when the user presses "Unload models" / "Free memory"
(``unload_all_models``). So kinema enters that list the supported way, as a
real ``LoadedModel`` around a ``ModelPatcher`` subclass (ComfyUI subclasses
``ModelPatcher`` itself) whose size is what kinema's pipelines hold on the
device and whose full unload calls ``kinema.backends.loading.release_all()``. Nothing
in ComfyUI is patched.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import comfy.model_management as mm
import comfy.model_patcher
import comfy.utils
import folder_paths
import numpy as np
import torch

from kinema.backends import loading
from kinema.backends.base import Backend

from .logic import MODEL_FOLDER

log = logging.getLogger("kinema")
PREVIEW_FORMAT = "JPEG"


def register_model_folders() -> None:
    """models/kinema (first) and kinema's own model folder, where `kinema models pull` puts weights."""
    from kinema.home import models_dir

    folder_paths.add_model_folder_path(
        MODEL_FOLDER, os.path.join(folder_paths.models_dir, MODEL_FOLDER), is_default=True
    )
    folder_paths.add_model_folder_path(MODEL_FOLDER, str(models_dir()))


def comfy_device() -> str:
    """The device ComfyUI computes on (``--cpu`` included); ``KINEMA_DEVICE`` still overrides."""
    return os.environ.get("KINEMA_DEVICE") or str(mm.get_torch_device())


class ComfyHost:
    """One node run's link to ComfyUI: a progress bar with previews, interrupts, and the memory manager."""

    previews = True  # kinema's previews are a cheap latent->RGB projection, like ComfyUI's latent2rgb

    def __init__(self) -> None:
        self._bar: comfy.utils.ProgressBar | None = None

    def progress(self, step: int, total: int, preview: np.ndarray | None) -> None:
        if self._bar is None:
            self._bar = comfy.utils.ProgressBar(total)
        shown = None
        if preview is not None:
            from comfy.cli_args import args
            from PIL import Image

            shown = (PREVIEW_FORMAT, Image.fromarray(preview), args.preview_size)
        # Also checks for an interrupt and raises ComfyUI's exception (a BaseException) if so.
        self._bar.update_absolute(step, total, shown)

    def interrupted(self) -> bool:
        return mm.processing_interrupted()

    def raise_interrupt(self) -> None:
        mm.throw_exception_if_processing_interrupted()
        raise mm.InterruptProcessingException()

    def before_generate(self, backend: Backend) -> None:
        make_room(backend)

    def after_generate(self, backend: Backend) -> None:
        residency().register()


# --------------------------------------------------------------------------- memory


def _held_bytes(device: torch.device) -> int:
    """Bytes of kinema's loaded weights that sit on ``device`` right now."""
    total = 0
    for pipe, _device, _placement in loading.loaded_pipelines():
        for component in pipe.components.values():
            if isinstance(component, torch.nn.Module):
                for tensor in (*component.parameters(), *component.buffers()):
                    if tensor.device.type == device.type and (
                        device.index is None or tensor.device.index in (None, device.index)
                    ):
                        total += tensor.numel() * tensor.element_size()
    return total


class KinemaResidency(comfy.model_patcher.ModelPatcher):
    """kinema's pipelines as one entry in ComfyUI's loaded-model list.

    It holds no weights itself (an empty module): sizes report what kinema
    holds on the device, loading is a no-op (kinema placed its weights), and
    a partial unload frees nothing, so ComfyUI falls through to a full unload,
    which releases every kinema pipeline.
    """

    def __init__(self, device: torch.device):
        holder = torch.nn.Module()
        holder.device = device
        super().__init__(holder, load_device=device, offload_device=torch.device("cpu"))

    def model_size(self) -> int:
        return _held_bytes(self.load_device)

    def loaded_size(self) -> int:
        return _held_bytes(self.load_device)

    def partially_load(self, device_to: Any, extra_memory: int = 0, force_patch_weights: bool = False) -> int:
        return 0

    def partially_unload(self, device_to: Any, memory_to_free: int = 0, force_patch_weights: bool = False) -> int:
        return 0

    def detach(self, unpatch_all: bool = True) -> Any:
        # unpatch_all is False when ComfyUI only re-orders its list (a re-load) or drops this object.
        if unpatch_all:
            log.info("kinema: releasing loaded pipelines (ComfyUI is freeing memory)")
            loading.release_all()
        return self.model

    def register(self) -> None:
        """Be in ComfyUI's loaded-model list (once), the way ``load_models_gpu`` puts models there."""
        for loaded in mm.current_loaded_models:
            if loaded.model is self:
                return
        entry = mm.LoadedModel(self)
        entry.model_load()
        mm.current_loaded_models.insert(0, entry)


_residency: dict[str, KinemaResidency] = {}
_residency_lock = threading.Lock()


def residency() -> KinemaResidency:
    device = mm.get_torch_device()
    with _residency_lock:
        if str(device) not in _residency:
            _residency[str(device)] = KinemaResidency(device)
        return _residency[str(device)]


def _weights_bytes(backend: Backend) -> int:
    from kinema import models
    from kinema.errors import KinemaError

    total = 0
    for model in (backend.model_id, getattr(backend, "audio_model_id", None)):
        if not model:
            continue
        if os.path.isfile(model):  # a single-file checkpoint (models/checkpoints, diffusion_models)
            total += os.path.getsize(model)
            continue
        try:
            folder = models.resolve(model)
        except KinemaError:
            continue
        total += sum(f.stat().st_size for f in folder.rglob("*.safetensors"))
    return total


def make_room(backend: Backend) -> None:
    """Before kinema loads weights onto the GPU, let ComfyUI unload its idle models to fit them."""
    device = mm.get_torch_device()
    if device.type == "cpu" or _held_bytes(device) > 0:
        return
    needed = _weights_bytes(backend)
    if needed:
        mm.free_memory(needed * 1.1 + mm.minimum_inference_memory(), device)
