"""A first frame whose aspect differs from the clip's is padded or cropped, never stretched. No bpy here.

Backends make clips on a grid (LTX-2 and Wan: sides in multiples of 32), so a 96x54 scene gives a 96x64 clip, and a
96x54 picture stretched to it would squash everything. The add-on asks for the grid size itself and fits the
picture to it: ``pad`` keeps all of it with black bars, ``crop`` fills the frame and cuts the edges.
"""

from __future__ import annotations

GRID = 32  # the sides LTX-2 and Wan accept; a backend with another grid snaps again and says so in the job's notes
MODES = ("pad", "crop")


def clip_size(width: int, height: int) -> tuple[int, int]:
    """The size to ask the server for: each side to the nearest multiple of ``GRID`` (at least one)."""
    return max(GRID, round(width / GRID) * GRID), max(GRID, round(height / GRID) * GRID)


def render_size(width: int, height: int, target: tuple[int, int], mode: str) -> tuple[int, int]:
    """The size to render a ``width`` x ``height`` view at (its own aspect) so that it fits ``target`` by ``mode``:
    inside it for ``pad``, covering it for ``crop``."""
    if mode not in MODES:
        raise ValueError(f"fit mode {mode!r}: use one of {', '.join(MODES)}")
    tw, th = target
    scale = (min if mode == "pad" else max)(tw / width, th / height)
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    if mode == "pad":
        return min(w, tw), min(h, th)
    return max(w, tw), max(h, th)  # rounding must never leave the view short of the frame


def fit(pixels, target: tuple[int, int], mode: str):
    """``pixels`` (rows x columns x channels, numpy) centred in a ``target`` frame: padded with black (alpha kept
    opaque) or cropped. The picture is never resampled, so the aspect is the rendered one."""
    import numpy as np

    tw, th = target
    h, w = pixels.shape[:2]
    if mode == "crop":
        top, left = max(0, (h - th) // 2), max(0, (w - tw) // 2)
        pixels = pixels[top : top + th, left : left + tw]
        h, w = pixels.shape[:2]
    frame = np.zeros((th, tw, pixels.shape[2]), pixels.dtype)
    if pixels.shape[2] == 4:
        frame[..., 3] = 1 if pixels.dtype.kind == "f" else 255
    top, left = (th - h) // 2, (tw - w) // 2
    frame[top : top + h, left : left + w] = pixels[: th - top, : tw - left]
    return frame
