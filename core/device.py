"""Device, precision and memory placement. torch is imported lazily: hosts like Blender never load it."""

from __future__ import annotations

import os
from typing import Any


def pick_device() -> str:
    """cuda > mps > cpu; ``KINEMA_DEVICE`` overrides."""
    import torch

    if forced := os.environ.get("KINEMA_DEVICE"):
        return forced
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(device: str) -> Any:
    import torch

    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    return torch.float32  # CPU half precision is slow and lossy


def free_memory_bytes(device: str) -> int | None:
    import torch

    if device.startswith("cuda"):
        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    return None


def model_bytes(pipe: Any) -> int:
    import torch

    total = 0
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            total += sum(p.numel() * p.element_size() for p in component.parameters())
    return total


def place(pipe: Any, device: str) -> str:
    """Put ``pipe`` on ``device`` the lightest way that fits; return the policy used.

    Offloading needs an accelerator (diffusers raises on CPU), so only CUDA
    branches; activations get ~30% headroom on top of the weights.
    """
    if device.startswith("cuda"):
        free = free_memory_bytes(device) or 0
        if hasattr(pipe, "vae") and hasattr(pipe.vae, "enable_tiling"):
            pipe.vae.enable_tiling()
        if model_bytes(pipe) * 1.3 > free:
            pipe.enable_model_cpu_offload(device=device)
            return "model-offload"
    pipe.to(device)
    return "full"


def release(device: str | None = None) -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if getattr(torch, "mps", None) and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        torch.mps.empty_cache()
