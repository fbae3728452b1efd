"""Comparing outputs across a save/load or a memory policy: float32 reordering allows, bit identity is not promised.

The same weights in another place (read back from safetensors, offloaded, or in
another allocation) can reach a kernel with another alignment, and another CPU
runs other kernels (AVX-512, AVX2, none): sums then add up in another order. In
float32 each reordering moves a result by a few units of 1.2e-7; through the tiny
models' dozens of layers and two steps that grew to 1.1e-6 at most (measured with
``ATEN_CPU_CAPABILITY=default|AVX2|AVX512`` on one machine, where the bit-for-bit
checks failed as they did on another machine). The bounds below leave ~10x room
and stay far below anything visible or audible.
"""

from __future__ import annotations

import numpy as np
import torch

# Pipeline outputs (frames in [0, 1], sound in [-1, 1]): measured differences up to 1.1e-6.
FLOAT32_ATOL = 1e-5


def _array(value) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def assert_float32_close(actual, expected, atol: float = FLOAT32_ATOL) -> None:
    """Same shape, every value within ``atol`` (absolute: outputs here are bounded by 1)."""
    actual, expected = _array(actual), _array(expected)
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=0, atol=atol)


def assert_uint8_within_one(actual, expected) -> None:
    """uint8 frames made from float32 ones: a 1e-6 shift can tip a value sitting at x.5 to the next step, no more."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype == np.uint8 and actual.shape == expected.shape
    difference = np.abs(actual.astype(np.int16) - expected.astype(np.int16))
    assert difference.max() <= 1, f"frames differ by up to {difference.max()} levels"
