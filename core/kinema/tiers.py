"""Quality tiers: one name per speed/quality trade-off, like Sora 2 and Sora 2 Pro.

Every tier's settings live in the ``TIERS`` table below and nowhere else.
A request names a tier (``standard`` unless it says otherwise); the backend's
plan turns it into steps, guidance and a step-cache setting for its model
family. Explicit ``steps`` or ``guidance`` in a request always win.

Cache thresholds are per family because the first block's residual moves at a
different pace in each architecture; the values were chosen with
``benchmarks/cache.py`` (see the README's speed section for what they buy).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kinema.errors import InvalidRequestError

DEFAULT_TIER = "standard"
# The most denoising steps a request may ask for and a tier may scale a default to (kinema.request checks
# requests against it; it lives here so that the tiers need nothing from the request).
MAX_STEPS = 500

TIERS: dict[str, dict[str, Any]] = {
    "draft": {
        "description": "fast preview: half the steps and step caching (or distilled weights when pulled)",
        "steps_factor": 0.5,
        "min_steps": 4,
        "cache": {
            "ltx2": {"method": "first-block", "threshold": 0.2},
            "wan": {"method": "first-block", "threshold": 0.2},
        },
        # A distilled checkpoint, used only if it is already on this machine and no --model was given.
        "distilled": {
            "ltx2": {"model": "diffusers/LTX-2.3-Distilled-Diffusers", "steps": 8, "guidance": 1.0},
        },
    },
    "standard": {
        "description": "the model's default steps, no approximations",
        "steps_factor": 1.0,
        "min_steps": 1,
        "cache": {},
        "distilled": {},
    },
    "final": {
        "description": "the shot you keep: 1.5x the steps, no caching",
        "steps_factor": 1.5,
        "min_steps": 1,
        "cache": {},
        "distilled": {},
    },
}


@dataclass(frozen=True)
class TierSettings:
    """What a tier means for one backend: the plan's steps and guidance, and the step cache."""

    tier: str
    steps: int
    guidance: float
    cache: dict[str, Any] | None = None
    notes: tuple[str, ...] = field(default=())


def tier_names() -> tuple[str, ...]:
    return tuple(TIERS)


def check_tier(tier: Any) -> str:
    if not isinstance(tier, str) or tier not in TIERS:
        raise InvalidRequestError(f"tier must be one of {', '.join(TIERS)}; got {tier!r}")
    return tier


def distilled_model(tier: str, family: str) -> dict[str, Any] | None:
    """The distilled checkpoint entry ``tier`` wants for ``family``, if any."""
    return TIERS[check_tier(tier)]["distilled"].get(family)


def settings(
    tier: str,
    family: str,
    *,
    default_steps: int,
    default_guidance: float,
    model_id: str = "",
    steps: int | None = None,
    guidance: float | None = None,
) -> TierSettings:
    """Resolve ``tier`` for a backend of ``family`` running ``model_id``; explicit steps/guidance win."""
    entry = TIERS[check_tier(tier)]
    notes: list[str] = []
    distilled = entry["distilled"].get(family)
    if distilled and model_id == distilled["model"]:
        # Distilled weights are trained for their own step count; caching on top of 8 steps costs too much.
        tier_steps, tier_guidance, cache = distilled["steps"], distilled["guidance"], None
        notes.append(f"{tier} tier: distilled {model_id}, {tier_steps} steps")
    else:
        tier_steps = min(MAX_STEPS, max(entry["min_steps"], round(default_steps * entry["steps_factor"])))
        tier_guidance, cache = default_guidance, entry["cache"].get(family)
    return TierSettings(
        tier=tier,
        steps=steps or tier_steps,
        guidance=tier_guidance if guidance is None else guidance,
        cache=dict(cache) if cache else None,
        notes=tuple(notes),
    )
