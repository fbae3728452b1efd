"""Step previews: a fixed latent -> RGB map fitted per VAE, asked for only by hosts that show them."""

import numpy as np
import pytest
import torch

import kinema
from kinema import GenerationRequest
from kinema.backends.previews import fit_rgb_map, project

SMALL = dict(width=32, height=32, seconds=0.375, fps=24, steps=2, seed=4)


def test_the_fit_recovers_a_linear_map():
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(400, 16, generator=generator)
    weight = torch.randn(3, 16, generator=generator) * 0.1
    bias = torch.tensor([0.5, 0.4, 0.3])
    fitted_weight, fitted_bias = fit_rgb_map(latents, latents @ weight.T + bias, ridge=1e-9)
    assert torch.allclose(fitted_weight, weight, atol=1e-4) and torch.allclose(fitted_bias, bias, atol=1e-4)


def test_projection_is_an_upscaled_uint8_picture():
    weight = torch.zeros(3, 4)
    weight[0, 0] = 1.0  # red follows channel 0
    frame = torch.zeros(4, 2, 3)
    frame[0, :, 1:] = 1.0
    picture = project(frame, weight, torch.zeros(3), max_side=12)
    assert picture.dtype == np.uint8 and picture.shape == (8, 12, 3)
    assert picture[:, -1, 0].min() == 255 and picture[:, 0, 0].max() == 0 and picture[..., 1:].max() == 0


@pytest.mark.parametrize("backend", ["tiny-ltx2", "tiny-wan"])
def test_previews_arrive_with_each_step_only_when_asked_and_change_nothing(backend):
    request = GenerationRequest("embers rising", backend=backend, audio=False, **SMALL)
    plain, with_previews = [], []
    clip = kinema.generate(request, progress=plain.append)
    previewed = kinema.generate(request, progress=with_previews.append, preview=True)

    assert all(event.preview is None for event in plain)
    previews = [event.preview for event in with_previews]
    assert len(previews) == 2
    assert all(p is not None and p.dtype == np.uint8 and p.ndim == 3 and p.shape[2] == 3 for p in previews)
    assert max(previews[0].shape[:2]) >= 128  # upscaled from the latent grid so a host can show it
    assert np.array_equal(clip.frames, previewed.frames)  # calibration uses its own noise: the clip is unchanged
