"""A first frame whose aspect differs from the clip's is padded or cropped, never stretched. No bpy here.

Backends make clips on a grid (LTX-2 and Wan: sides in multiples of 32), so a 96x54 scene gives a 96x64 clip, and a
96x54 picture stretched to it would squash everything. The add-on asks for the grid size itself and fits the
picture to it: ``pad`` keeps all of it with black bars, ``crop`` fills the frame and cuts the edges.

The clip then goes back to exactly the size it was asked for (``placement``): a clip started from a frame lines up
with that frame pixel for pixel (Pad's bars are cropped off, so it fills the frame; Crop's cut edges stay empty), and
a clip from a prompt alone is fitted inside the frame (Pad) or covers it (Crop), never stretched.
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


def placement(
    target: tuple[int, int], clip: tuple[int, int], mode: str, *, from_frame: bool
) -> tuple[tuple[int, int, int, int], tuple[float, float]]:
    """How a ``clip``-size clip shows at exactly ``target`` (the render size it was asked for), centred at its own
    size: ``((left, right, bottom, top), (scale_x, scale_y))``, the pixels to crop off each side of the clip and the
    scale of what is left.

    ``from_frame``: the clip started from a ``target``-size picture that ``fit`` put into it by ``mode``; the
    inverse puts the picture back where it was. Otherwise the whole clip is fitted inside ``target`` (``pad``) or
    covers it, cropped to it (``crop``), with one scale for both sides.
    """
    if mode not in MODES:
        raise ValueError(f"fit mode {mode!r}: use one of {', '.join(MODES)}")
    tw, th = target
    cw, ch = clip
    if from_frame:
        vw, vh = render_size(tw, th, clip, mode)  # the picture as it was rendered for the clip
        if mode == "crop":  # the clip is the middle of the picture: its cut edges stay empty
            return (0, 0, 0, 0), (tw / vw, th / vh)
        left, top = (cw - vw) // 2, (ch - vh) // 2  # where ``fit`` put the picture: the rest is the bars
        return (left, cw - vw - left, ch - vh - top, top), (tw / vw, th / vh)
    scale = (min if mode == "pad" else max)(tw / cw, th / ch)
    keep_w, keep_h = min(cw, round(tw / scale)), min(ch, round(th / scale))
    left, top = (cw - keep_w) // 2, (ch - keep_h) // 2
    return (left, cw - keep_w - left, ch - keep_h - top, top), (scale, scale)
