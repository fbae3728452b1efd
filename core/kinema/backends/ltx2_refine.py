"""The two-stage recipe's second stage: which weights refine the upsampled clip, and with how much guidance.

Lightricks' recipe (diffusers' LTX-2 docs, "Two-stages Generation"; ltx-pipelines' ``ti2vid_two_stages``) refines
the upsampled clip at full size in 3 steps of the distilled second-stage sigmas, with **distilled** weights:

* the full model with its distilled LoRA (``ltx-2-19b-distilled-lora-384.safetensors`` beside Lightricks/LTX-2's
  folders), loaded for the second stage only, so the first stage stays the full model's;
* a distilled checkpoint as it is (the distilled LoRA is the difference between the two, so it must not be added
  to weights that already are distilled).

Distilled weights are trained to run without guidance: one transformer call a step, with no classifier-free,
spatio-temporal or modality guidance passes. Without distilled weights the full model refines at the plan's
guidance (its 3 steps do what they can), and the clip's notes say where the LoRA goes.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kinema.backends.lora import adapter_names
from kinema.backends.ltx2_checkpoint import REFINER_PATTERNS, Checkpoint
from kinema.errors import InvalidRequestError

# diffusers.pipelines.ltx2.utils.STAGE_2_DISTILLED_SIGMA_VALUES: the distilled schedule's last three sigmas, each
# one step; the first is also how much noise the upsampled latents get back.
SIGMAS = (0.909375, 0.725, 0.421875)
# Every guidance pass of diffusers' LTX2Pipeline off (its defaults turn audio CFG, STG and modality guidance on).
NO_GUIDANCE = {
    "guidance_scale": 1.0,
    "audio_guidance_scale": 1.0,
    "stg_scale": 0.0,
    "audio_stg_scale": 0.0,
    "modality_scale": 1.0,
    "audio_modality_scale": 1.0,
}
ADAPTER = "kinema_distilled_refiner"


@dataclass(frozen=True)
class Refiner:
    """The weights that run the second stage: ``"distilled-lora"``, ``"distilled-checkpoint"`` or ``"full"``."""

    weights: str
    lora: Path | None = None
    note: str = ""  # why the full weights refine, when a distilled LoRA is there but cannot load

    @property
    def distilled(self) -> bool:
        return self.weights != "full"

    def describe(self) -> str:
        if self.weights == "distilled-lora":
            return f"the distilled LoRA {self.lora.name if self.lora else ''}, no guidance"
        if self.weights == "distilled-checkpoint":
            return "the checkpoint's own distilled weights, no guidance"
        return "the full weights at the plan's guidance" + (f" ({self.note})" if self.note else "")

    def guidance(self, plan_guidance: float) -> dict[str, Any]:
        """The pipeline's guidance arguments for the second stage (they override the backend's own)."""
        return dict(NO_GUIDANCE) if self.distilled else {"guidance_scale": plan_guidance}

    def recorded(self) -> str:
        """What the clip's metadata ``recipe.refiner`` says."""
        if self.weights == "distilled-lora" and self.lora is not None:
            return f"distilled LoRA {self.lora.name}"
        return {"distilled-checkpoint": "distilled checkpoint"}.get(self.weights, "full weights")


def first_stage_guidance(checkpoint: Checkpoint | None, plan_guidance: float) -> dict[str, Any]:
    """The first (or only) pass's guidance arguments. A distilled checkpoint asked for no guidance (the draft
    tier's 1.0) gets every pass off: diffusers' LTX2Pipeline would otherwise still run audio CFG (its
    ``audio_guidance_scale`` defaults to 7), STG and modality guidance. A request's own guidance above 1 wins."""
    if checkpoint is not None and checkpoint.distilled and plan_guidance <= 1.0:
        return dict(NO_GUIDANCE)
    return {"guidance_scale": plan_guidance}


def choose(checkpoint: Checkpoint | None) -> Refiner:
    """The second stage's weights for ``checkpoint`` (JSON and file names only: cheap enough for every plan)."""
    if checkpoint is None:
        return Refiner("full")
    if checkpoint.distilled:
        return Refiner("distilled-checkpoint")
    if checkpoint.refiner_lora is None:
        where = " or ".join(REFINER_PATTERNS)
        return Refiner("full", note=f"no distilled LoRA in the checkpoint folder ({where})")
    if importlib.util.find_spec("peft") is None:
        return Refiner(
            "full",
            checkpoint.refiner_lora,
            note=f"the distilled LoRA {checkpoint.refiner_lora.name} needs peft: pip install 'kinema[lora]'",
        )
    return Refiner("distilled-lora", checkpoint.refiner_lora)


@contextlib.contextmanager
def active(pipe: Any, refiner: Refiner, loras: Sequence[tuple[str, float]]) -> Iterator[None]:
    """The body runs with ``refiner``'s LoRA on ``pipe`` beside the clip's own ``loras`` (which ``loras_loaded``
    keeps loaded around both stages); afterwards only those remain, so the next clip's first stage is untouched."""
    if refiner.weights != "distilled-lora" or refiner.lora is None:
        yield
        return
    try:
        pipe.load_lora_weights(str(refiner.lora), adapter_name=ADAPTER)
    except (ValueError, KeyError, RuntimeError, OSError) as error:
        with contextlib.suppress(Exception):  # whatever got in before it failed comes out
            pipe.delete_adapters(ADAPTER)
        raise InvalidRequestError(
            f"the distilled LoRA {refiner.lora} does not fit this checkpoint ({error}); take it out of the folder"
            " or put in the one made for this checkpoint"
        ) from None
    own = adapter_names(loras)
    try:
        pipe.set_adapters([*own, ADAPTER], adapter_weights=[*(weight for _, weight in loras), 1.0])
        yield
    finally:
        if own:
            pipe.delete_adapters(ADAPTER)
            pipe.set_adapters(own, adapter_weights=[weight for _, weight in loras])
        else:
            pipe.unload_lora_weights()
