"""Cheap step previews: one latent frame projected to RGB by a fixed linear map.

Decoding a latent with the VAE at every step would cost as much as a denoising
step. Instead, like ComfyUI's "latent2rgb" previewers, a preview multiplies
each latent pixel's channels by a fixed ``[3, C]`` matrix. ComfyUI ships
those matrices per model family; kinema derives its own, once per loaded VAE:
it encodes a small synthetic colour clip, pools the clip's RGB onto the latent
grid and fits the map by ridge regression (how such tables are made in the
first place). That takes one small VAE encode, only when previews are asked
for (``kinema.generate(..., preview=True)``), and is cached on the VAE.

Previews show the latent the sampler holds after each step: noisy early on,
close to the final colours and layout at the end.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np

PreviewFn = Callable[[dict], np.ndarray | None]

PREVIEW_SIDE = 256  # previews are upscaled (bilinear) to about this longest side
_CALIBRATION_CLIPS = 4
_CALIBRATION_GRID = 4  # latent pixels per side of each calibration clip
_RIDGE = 1e-3
_MAP_ATTRIBUTE = "_kinema_rgb_map"


def fit_rgb_map(latents: Any, rgb: Any, ridge: float = _RIDGE) -> tuple[Any, Any]:
    """Least-squares (ridge) fit of ``rgb ≈ latents @ weight.T + bias``.

    ``latents`` is ``[N, C]``, ``rgb`` is ``[N, 3]`` in [0, 1]; returns
    ``weight`` ``[3, C]`` and ``bias`` ``[3]`` as float32 tensors.
    """
    import torch

    x = torch.as_tensor(latents, dtype=torch.float64)
    y = torch.as_tensor(rgb, dtype=torch.float64)
    x_mean, y_mean = x.mean(0), y.mean(0)
    xc, yc = x - x_mean, y - y_mean
    # Scale the ridge to the data so it regularises the same whatever the latents' magnitude.
    gram = xc.T @ xc
    penalty = ridge * (torch.trace(gram) / gram.shape[0] + 1e-12)
    weight = torch.linalg.solve(gram + penalty * torch.eye(gram.shape[0], dtype=gram.dtype), xc.T @ yc).T
    bias = y_mean - weight @ x_mean
    return weight.float(), bias.float()


def _calibration_video(frames: int, side: int, generator: Any) -> Any:
    """``_CALIBRATION_CLIPS`` static clips of smooth random colour fields, [B, 3, F, side, side] in [-1, 1].

    Static, so every latent frame of a clip sees the same picture; smooth, so
    pooling to the latent grid loses little.
    """
    import torch
    import torch.nn.functional as F

    coarse = torch.rand(_CALIBRATION_CLIPS, 3, 2, 2, generator=generator)
    fine = torch.rand(_CALIBRATION_CLIPS, 3, _CALIBRATION_GRID, _CALIBRATION_GRID, generator=generator)
    field = F.interpolate(coarse, size=(side, side), mode="bilinear", align_corners=False) * 0.6
    field = field + F.interpolate(fine, size=(side, side), mode="nearest") * 0.4
    return (field * 2 - 1).unsqueeze(2).expand(-1, -1, frames, -1, -1).contiguous()


def calibrate(vae: Any, spatial: int, temporal: int, normalize: Callable[[Any], Any]) -> tuple[Any, Any]:
    """The VAE's latent → RGB map (cached on the VAE). ``normalize`` maps raw VAE latents to the sampler's space."""
    cached = getattr(vae, _MAP_ATTRIBUTE, None)
    if cached is not None:
        return cached
    import torch
    import torch.nn.functional as F

    side = spatial * _CALIBRATION_GRID
    generator = torch.Generator().manual_seed(0)  # its own generator: the clip's noise is untouched
    video = _calibration_video(temporal + 1, side, generator)
    parameter = next(vae.parameters())
    with torch.no_grad():
        encoded = vae.encode(video.to(parameter.device, parameter.dtype)).latent_dist.mode()
        latents = normalize(encoded).float().cpu()  # [B, C, f, h, w]
    b, c, f, h, w = latents.shape
    rgb = F.adaptive_avg_pool2d((video[:, :, 0] + 1) / 2, (h, w))  # [B, 3, h, w], same picture every frame
    rgb = rgb.unsqueeze(2).expand(-1, -1, f, -1, -1)
    weight, bias = fit_rgb_map(latents.permute(0, 2, 3, 4, 1).reshape(-1, c), rgb.permute(0, 2, 3, 4, 1).reshape(-1, 3))
    with contextlib.suppress(AttributeError):  # a VAE object that refuses attributes: recalibrate next time
        setattr(vae, _MAP_ATTRIBUTE, (weight, bias))
    return weight, bias


def project(frame: Any, weight: Any, bias: Any, max_side: int = PREVIEW_SIDE) -> np.ndarray:
    """One latent frame ``[C, h, w]`` → uint8 ``[H, W, 3]``, upscaled so its longest side is about ``max_side``."""
    import torch
    from PIL import Image

    with torch.no_grad():
        rgb = torch.einsum("chw,kc->hwk", frame.detach().float().cpu(), weight) + bias
        small = (rgb.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    h, w = small.shape[:2]
    scale = max(1, max_side // max(h, w))
    if scale == 1:
        return small
    # Upscaled after the projection, at latent size: resizing the picture is far cheaper than resizing floats.
    return np.asarray(Image.fromarray(small).resize((w * scale, h * scale), Image.Resampling.BILINEAR))


def ltx2_preview(pipe: Any, num_frames: int, height: int, width: int) -> PreviewFn:
    """Previews for LTX-2 pipelines, whose sampler holds packed tokens ``[B, f*h*w, C]`` (patch size 1)."""
    spatial = pipe.vae_spatial_compression_ratio
    temporal = pipe.vae_temporal_compression_ratio
    vae = pipe.vae
    grid = ((num_frames - 1) // temporal + 1, height // spatial, width // spatial)

    def normalize(latents: Any) -> Any:
        return pipe._normalize_latents(latents, vae.latents_mean, vae.latents_std, vae.config.scaling_factor)

    def preview(callback_kwargs: dict) -> np.ndarray | None:
        latents = callback_kwargs.get("latents")
        f, h, w = grid
        if latents is None or latents.ndim != 3 or latents.shape[1] != f * h * w:
            return None  # a layout this preview does not know: no preview rather than a wrong one
        weight, bias = calibrate(vae, spatial, temporal, normalize)
        frame = latents[0].reshape(f, h, w, -1)[f // 2].permute(2, 0, 1)
        return project(frame, weight, bias)

    return preview


def wan_preview(pipe: Any) -> PreviewFn:
    """Previews for Wan pipelines, whose sampler holds ``[B, C, f, h, w]`` latents."""
    import torch

    vae = pipe.vae
    spatial, temporal = pipe.vae_scale_factor_spatial, pipe.vae_scale_factor_temporal

    def normalize(latents: Any) -> Any:
        mean = torch.tensor(vae.config.latents_mean, device=latents.device, dtype=latents.dtype).view(1, -1, 1, 1, 1)
        std = torch.tensor(vae.config.latents_std, device=latents.device, dtype=latents.dtype).view(1, -1, 1, 1, 1)
        return (latents - mean) / std

    def preview(callback_kwargs: dict) -> np.ndarray | None:
        latents = callback_kwargs.get("latents")
        if latents is None or latents.ndim != 5:
            return None
        weight, bias = calibrate(vae, spatial, temporal, normalize)
        if weight.shape[1] != latents.shape[1]:
            return None
        return project(latents[0, :, latents.shape[2] // 2], weight, bias)

    return preview
