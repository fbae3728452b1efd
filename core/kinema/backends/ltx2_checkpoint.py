"""What an LTX-2.x checkpoint folder says about itself, read from its JSON configs alone (no torch, no diffusers).

LTX-2, 2.3 and 2.5 load through the same diffusers ``LTX2Pipeline`` family; the folder tells them apart:

* the vocoder: ``LTX2Vocoder`` (LTX-2.0, 24 kHz) or ``LTX2VocoderWithBWE`` (2.3 and later, bandwidth extension
  to 48 kHz); the rate is the vocoder config's ``output_sampling_rate``;
* a ``duration_head`` component (2.5 and later);
* the transformer's positional extent: RoPE positions are seconds in time (``pos_embed_max_pos``, and
  ``audio_pos_embed_max_pos`` for the sound) and pixels in space (``base_width`` x ``base_height``); one pass is
  made for clips inside them;
* a latent upsampler (``latent_upsampler/`` or ``spatial_upsampler/``, an ``LTX2LatentUpsamplerModel``): the
  two-stage recipe, which makes the clip at half size and doubles it in latent space, so a clip can be twice as
  wide and high as one pass reaches;
* distilled weights for that recipe's second stage (``kinema.backends.ltx2_refine``): a distilled LoRA beside the
  checkpoint (``ltx-2-19b-distilled-lora-384.safetensors`` in Lightricks/LTX-2), or a checkpoint that is itself
  distilled (its folder's name says so, as ``diffusers/LTX-2.3-Distilled-Diffusers`` does).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kinema.backends.limits import Limits

UPSAMPLER_FOLDERS = ("latent_upsampler", "spatial_upsampler")
# Where a distilled LoRA sits: at the folder's top, as Lightricks names it, or alone in a folder of its own.
REFINER_PATTERNS = ("*distilled*lora*.safetensors", "distilled_lora/*.safetensors")
# LTX-2 as Lightricks serves it: 500 frames in 20 s (25 fps); the frame limit keeps that rate for shorter extents.
FRAMES_PER_SECOND_OF_EXTENT = 25


@dataclass(frozen=True)
class Checkpoint:
    folder: Path
    version: str  # "LTX-2", "LTX-2.3" or "LTX-2.5" (the family member the folder's components belong to)
    sample_rate: int | None  # the vocoder's output rate, Hz
    seconds: float | None  # the positional extent in time: the longest clip one pass is made for
    width: int | None  # the positional extent in space, pixels
    height: int | None
    upsampler: Path | None  # the latent upsampler's folder: the two-stage recipe is available
    refiner_lora: Path | None = None  # a distilled LoRA for the two-stage recipe's second stage
    distilled: bool = False  # the checkpoint's own weights are distilled (8 steps, no guidance)

    def limits(self, base: Limits) -> Limits:
        """``base`` narrowed to what this checkpoint reaches: its extent in seconds and pixels (x4 with an upsampler)."""
        why = [f"{self.version} checkpoint"]
        seconds, frames, pixels = base.seconds, base.frames, base.pixels
        if self.seconds:
            seconds = min(seconds, self.seconds)
            last = int(seconds * FRAMES_PER_SECOND_OF_EXTENT) - 1
            frames = min(frames, last - last % 8 + 1)
            why.append(f"positions reach {self.seconds:g} s")
        if self.width and self.height:
            reach = self.width * self.height * (4 if self.upsampler else 1)
            pixels = min(pixels, reach)
            doubled = ", twice each side through its latent upsampler" if self.upsampler else ""
            why.append(f"one pass reaches {self.width}x{self.height}{doubled}")
        if self.sample_rate:
            why.append(f"{self.sample_rate / 1000:g} kHz sound")
        return replace(base, seconds=seconds, frames=frames, pixels=pixels, why=f"{'; '.join(why)}; {base.why}")

    def describe(self) -> str:
        two = f", two-stage with {self.upsampler.name}/" if self.upsampler else ""
        if self.upsampler and self.distilled:
            two += " (distilled weights refine)"
        elif self.upsampler and self.refiner_lora:
            two += f" and the distilled LoRA {self.refiner_lora.name}"
        rate = f", {self.sample_rate / 1000:g} kHz sound" if self.sample_rate else ""
        distilled = " distilled" if self.distilled else ""
        return f"{self.version}{distilled}{rate}{two}"


def _json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _component(index: dict[str, Any], name: str) -> str | None:
    entry = index.get(name)
    if isinstance(entry, list) and len(entry) == 2 and entry[1]:
        return str(entry[1])
    return None


def find_upsampler(folder: Path) -> Path | None:
    for name in UPSAMPLER_FOLDERS:
        sub = folder / name
        if "LatentUpsampler" in str(_json(sub / "config.json").get("_class_name", "")) and any(
            sub.glob("*.safetensors")
        ):
            return sub
    return None


def find_refiner_lora(folder: Path) -> Path | None:
    for pattern in REFINER_PATTERNS:
        found = sorted(path for path in folder.glob(pattern) if path.is_file())
        if found:
            return found[0]
    return None


@functools.lru_cache(maxsize=16)
def _read(folder: Path, stamp: float) -> Checkpoint:
    index = _json(folder / "model_index.json")
    vocoder = _json(folder / "vocoder" / "config.json")
    transformer = _json(folder / "transformer" / "config.json")
    bwe = _component(index, "vocoder") == "LTX2VocoderWithBWE" or "bwe_in_channels" in vocoder
    version = "LTX-2.5" if _component(index, "duration_head") else "LTX-2.3" if bwe else "LTX-2"
    extents = [transformer.get(k) for k in ("pos_embed_max_pos", "audio_pos_embed_max_pos")]
    seconds = min((float(e) for e in extents if isinstance(e, (int, float)) and e > 0), default=None)
    width, height = transformer.get("base_width"), transformer.get("base_height")
    rate = vocoder.get("output_sampling_rate")
    return Checkpoint(
        folder=folder,
        version=version,
        sample_rate=int(rate) if isinstance(rate, (int, float)) else None,
        seconds=seconds,
        width=int(width) if isinstance(width, int) else None,
        height=int(height) if isinstance(height, int) else None,
        upsampler=find_upsampler(folder),
        refiner_lora=find_refiner_lora(folder),
        distilled="distilled" in folder.name.lower(),
    )


def read(folder: Path) -> Checkpoint:
    """The checkpoint in ``folder`` (re-read when its model_index.json changes, or a file is added beside it: a
    distilled LoRA put there for the two-stage recipe)."""
    folder = Path(folder)
    try:
        stamp = max((folder / "model_index.json").stat().st_mtime, folder.stat().st_mtime)
    except OSError:
        stamp = 0.0
    return _read(folder, stamp)
