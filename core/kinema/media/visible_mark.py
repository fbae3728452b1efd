"""The optional visible mark: a small text label in the bottom-right corner of every frame.

Off by default (``Clip.save(path, visible_mark="AI-generated")`` or ``kinema generate
--visible-mark TEXT`` turn it on): hosts such as ComfyUI, Blender and OBS hand clips
to users who compose the final frame themselves, and the signed manifest plus the
invisible watermark already carry the provenance.
"""

from __future__ import annotations

import numpy as np


def draw(frames: np.ndarray, text: str) -> np.ndarray:
    """A copy of ``frames`` (uint8 [T, H, W, 3]) with ``text`` in the bottom-right corner."""
    from PIL import Image, ImageDraw, ImageFont

    _, height, width, _ = frames.shape
    size = max(8, round(min(height, width) / 18))
    try:
        font = ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        font = ImageFont.load_default()
    # Draw once into a coverage mask, then blend it into every frame (same place, same look).
    mask = Image.new("L", (width, height), 0)
    pen = ImageDraw.Draw(mask)
    left, top, right, bottom = pen.textbbox((0, 0), text, font=font)
    margin = max(2, size // 2)
    x, y = width - (right - left) - margin - left, height - (bottom - top) - margin - top
    shadow = Image.new("L", (width, height), 0)
    ImageDraw.Draw(shadow).text((x + 1, y + 1), text, fill=255, font=font)
    pen.text((x, y), text, fill=255, font=font)
    white = np.asarray(mask, np.float32)[None, ..., None] / 255.0 * 0.85
    dark = np.asarray(shadow, np.float32)[None, ..., None] / 255.0 * 0.5
    out = frames.astype(np.float32) * (1.0 - dark)
    out = out * (1.0 - white) + 255.0 * white
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
