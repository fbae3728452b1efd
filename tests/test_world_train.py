"""Demo-world training: every stage runs, resuming gives the same weights as not stopping, and the assembled
folder loads into the real LTX2Pipeline (small batches and a handful of steps: this checks the mechanics, the
shipped model's quality is checked in test_world_model.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from kinema.world import model as M
from kinema.world import train
from kinema.world.assemble import CARD_FILE, assemble
from kinema.world.captions import VOCABULARY


def _run(stage, directory, steps, batch=2):
    train.run(stage, directory, steps, seed=0, say=lambda _: None, batch=batch)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Every stage for two steps (latents: four clips), with a single torch thread as training runs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    directory = tmp_path_factory.mktemp("world-train")
    try:
        for stage in ("video_vae", "audio_vae", "vocoder"):
            _run(stage, directory, 2)
        _run("latents", directory, 4)
        _run("transformer", directory, 2)
        yield directory
    finally:
        torch.set_num_threads(threads)


def _sharing_autoencoders(trained, directory):
    """A training folder that links to ``trained``'s autoencoders and latents: only the transformer is its own."""
    directory.mkdir()
    for stage in ("video_vae", "audio_vae", "vocoder", "latents"):
        (directory / stage).symlink_to(trained / stage)
    return directory


def _weights(directory, stage):
    _, path = train.latest(directory / stage)
    return load_file(str(path))


def test_resumed_transformer_matches_an_uninterrupted_run(trained, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # Same autoencoders and latents; the transformer trained 4 steps straight vs 2 + 2 resumed.
        straight_dir, resumed = (
            _sharing_autoencoders(trained, tmp_path / "straight"),
            _sharing_autoencoders(trained, tmp_path / "resumed"),
        )
        _run("transformer", straight_dir, 4)
        _run("transformer", resumed, 2)
        _run("transformer", resumed, 4)
    finally:
        torch.set_num_threads(threads)
    straight, stopped = _weights(straight_dir, "transformer"), _weights(resumed, "transformer")
    assert straight.keys() == stopped.keys()
    assert any(k.startswith("ema.") for k in straight) and any(k.startswith("opt.") for k in straight)
    different = [k for k in straight if not torch.equal(straight[k], stopped[k])]
    assert not different, different[:5]


def test_resumed_autoencoder_matches_an_uninterrupted_run(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _run("audio_vae", tmp_path / "a", 2, batch=1)
        _run("audio_vae", tmp_path / "b", 1, batch=1)
        _run("audio_vae", tmp_path / "b", 2, batch=1)
    finally:
        torch.set_num_threads(threads)
    a, b = _weights(tmp_path / "a", "audio_vae"), _weights(tmp_path / "b", "audio_vae")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_training_never_sees_held_out_pairs(trained):
    data = train.LatentSet(trained)
    assert len(data) == 4
    assert not any(scene.held_out for scene in data.scenes)
    assert data.video.shape[1:] == (7 * 8 * 8, 16) and data.audio.shape[1:] == (train.audio_latent_frames(), 16)


def test_assembled_folder_runs_in_ltx2_pipeline(trained, tmp_path):
    from diffusers import LTX2Pipeline

    folder = assemble(trained, tmp_path / "world")
    card = json.loads((folder / CARD_FILE).read_text())
    assert card["clips"] == 4 and card["steps"]["transformer"] == 2
    assert not list(folder.rglob("*.bin")) and list(folder.rglob("*.safetensors"))
    pipe = LTX2Pipeline.from_pretrained(folder)
    seeded, _ = M.text_encoder_and_tokenizer(tuple(sorted(VOCABULARY)))
    trained_words = pipe.text_encoder.get_input_embeddings().weight
    assert not torch.equal(trained_words, seeded.get_input_embeddings().weight), "word embeddings train too"
    stats = load_file(str(trained / "latents" / "stats.safetensors"))
    assert torch.equal(pipe.vae.latents_mean, stats["video_mean"])
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        prompt="a small red ball drops onto a wooden floor",
        width=64,
        height=64,
        num_frames=25,
        frame_rate=12.0,
        num_inference_steps=2,
        guidance_scale=1.0,
        output_type="np",
        generator=torch.Generator().manual_seed(0),
    )
    assert out.frames.shape == (1, 25, 64, 64, 3)
    assert out.audio.shape[-1] == pytest.approx(25 / 12 * 16000, rel=0.03)
    assert np.isfinite(out.frames).all()


def test_training_noise_levels_reach_the_samplers_first_steps():
    """The steps where only the prompt decides colours (sigma >= 0.9) get their share, not the ~3 % of logit-normal."""
    gen = torch.Generator().manual_seed(0)
    mu = 0.744  # the shift calculate_shift gives the world's 448 video tokens
    plain = train.sample_sigmas(gen, 20000, mu)
    moved = train.training_sigmas(gen, 20000, mu)
    assert (plain >= train.HIGH_NOISE_FLOOR).float().mean() < 0.1
    top = (moved >= train.HIGH_NOISE_FLOOR).float().mean().item()
    assert train.HIGH_NOISE_SHARE <= top <= train.HIGH_NOISE_SHARE + 0.1
    assert moved.min() > 0 and moved.max() <= 1


def test_a_lost_training_folder_goes_on_from_the_shipped_weights(tmp_path):
    """--from-shipped seeds the transformer stage with the shipped transformer, connectors and word embeddings."""
    from kinema.world.paths import WEIGHTS

    assert train.seed_from_shipped(tmp_path, say=lambda _: None)
    step, path = train.latest(tmp_path / "transformer")
    assert step == json.loads((WEIGHTS / CARD_FILE).read_text())["steps"]["transformer"]
    seeded = load_file(str(path))
    shipped = load_file(str(WEIGHTS / "text_encoder" / "model.safetensors"))
    words = next(shipped[k] for k in train.TEXT_EMBEDDING_KEYS if k in shipped)
    assert torch.equal(seeded["model.text_embedding.weight"], words)
    assert not train.seed_from_shipped(tmp_path, say=lambda _: None), "a folder with a checkpoint is left alone"
