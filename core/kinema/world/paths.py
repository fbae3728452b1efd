"""Where the demo world's trained model lives: one place for the training, assembly and the backend.

Stdlib only, so the backend can ask whether the model is there without importing torch or diffusers.
"""

from pathlib import Path

# The shipped pipeline folder (kinema.world.assemble writes it; the world backend loads it).
WEIGHTS = Path(__file__).parent / "weights"
