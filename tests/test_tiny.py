"""The tiny offline pipelines: build, save, reload, run, same output twice."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import (
    LTX2ImageToVideoPipeline,
    LTX2Pipeline,
    StableAudioPipeline,
    WanImageToVideoPipeline,
    WanPipeline,
)
from floats import assert_float32_close
from PIL import Image

from kinema.backends import tiny_parts as tiny

PROMPT = "a cat surfing at dawn, ocean waves"
MAX_BYTES = 4 * 1024 * 1024


def _gen():
    return torch.Generator("cpu").manual_seed(0)


def _image(size=32):
    rng = np.random.RandomState(0)
    return Image.fromarray((rng.rand(size, size, 3) * 255).astype("uint8"))


def _quiet(pipe):
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Each kind built once for this module: {kind: folder}."""
    root = tmp_path_factory.mktemp("tiny")
    return {kind: tiny.build_tiny(kind, root / kind) for kind in tiny.KINDS}


def _check_folder(folder, expected_class):
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == expected_class
    files = [p for p in folder.rglob("*") if p.is_file()]
    weights = [p for p in files if p.suffix in {".safetensors", ".bin", ".pt", ".pth", ".ckpt"}]
    assert weights and all(p.suffix == ".safetensors" for p in weights)
    assert sum(p.stat().st_size for p in files) < MAX_BYTES
    # Nothing left behind next to the folder by the atomic write.
    assert [p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}.")] == []


# ---------------------------------------------------------------------------------- tokenizers


def test_gemma_tokenizer_offline_roundtrip(tmp_path):
    tok = tiny.tiny_gemma_tokenizer()
    ids = tok(PROMPT).input_ids
    assert ids[0] == tok.bos_token_id
    assert tok.unk_token_id not in ids
    assert len(ids) < len(PROMPT) // 2  # words, not characters
    assert tok.decode(ids, skip_special_tokens=True) == PROMPT
    odd = "Crème brûlée 🐱 in Zürich"  # byte fallback covers anything
    assert tok.decode(tok(odd).input_ids, skip_special_tokens=True) == odd

    tok.save_pretrained(tmp_path)
    again = type(tok).from_pretrained(tmp_path)
    assert again(PROMPT).input_ids == ids


def test_t5_tokenizer_offline_roundtrip(tmp_path):
    tok = tiny.tiny_t5_tokenizer()
    ids = tok(PROMPT).input_ids
    assert ids[-1] == tok.eos_token_id
    assert tok.unk_token_id not in ids
    assert tok.decode(ids, skip_special_tokens=True) == PROMPT
    tok.save_pretrained(tmp_path)
    assert type(tok).from_pretrained(tmp_path)(PROMPT).input_ids == ids


# ---------------------------------------------------------------------------------- LTX-2


def _ltx2_kwargs(num_frames):
    return dict(
        prompt=PROMPT,
        negative_prompt="blurry",
        width=32,
        height=32,
        num_frames=num_frames,
        frame_rate=24.0,
        num_inference_steps=2,
        output_type="np",
    )


@pytest.mark.parametrize("num_frames", [9, 25])
def test_ltx2_text_to_video_with_audio(built, num_frames):
    folder = built["ltx2"]
    _check_folder(folder, "LTX2Pipeline")
    pipe = _quiet(LTX2Pipeline.from_pretrained(folder, use_safetensors=True))

    out = pipe(generator=_gen(), **_ltx2_kwargs(num_frames))
    frames, audio = out.frames, out.audio
    assert frames.shape == (1, num_frames, 32, 32, 3)
    assert np.isfinite(frames).all() and frames.min() >= 0.0 and frames.max() <= 1.0
    # Audio comes back as a torch tensor (B, 2, samples) whatever output_type says.
    assert isinstance(audio, torch.Tensor) and audio.shape[:2] == (1, 2)
    assert torch.isfinite(audio).all()

    sample_rate = pipe.vocoder.config.output_sampling_rate
    assert sample_rate == 24000
    audio_s, video_s = audio.shape[-1] / sample_rate, num_frames / 24.0
    # Real LTX-2.0 layout: the audio spans the video, short only by the causal VAE's
    # 3 trimmed mel frames plus latent rounding (~12% at 9 frames, ~3% at 25).
    assert abs(audio_s - video_s) / video_s < (0.15 if num_frames == 9 else 0.05)

    again = pipe(generator=_gen(), **_ltx2_kwargs(num_frames))
    assert np.array_equal(frames, again.frames)
    assert torch.equal(audio, again.audio)


def test_ltx2_disk_matches_memory(built):
    memory = _quiet(LTX2Pipeline(**tiny.tiny_ltx2_components()))
    disk = _quiet(LTX2Pipeline.from_pretrained(built["ltx2"], use_safetensors=True))
    a = memory(generator=_gen(), **_ltx2_kwargs(9))
    b = disk(generator=_gen(), **_ltx2_kwargs(9))
    # Weights read back from safetensors sit at other addresses, so kernels may sum in another order: float32
    # reordering (measured up to 1.1e-6 across CPU kernel sets), not bit identity (tests/floats.py).
    assert_float32_close(a.frames, b.frames)
    assert_float32_close(a.audio, b.audio)


def test_ltx2_image_to_video(built):
    pipe = _quiet(LTX2ImageToVideoPipeline.from_pretrained(built["ltx2"], use_safetensors=True))
    out = pipe(image=_image(), generator=_gen(), **_ltx2_kwargs(9))
    assert out.frames.shape == (1, 9, 32, 32, 3)
    assert out.audio.shape[:2] == (1, 2)
    again = pipe(image=_image(), generator=_gen(), **_ltx2_kwargs(9))
    assert np.array_equal(out.frames, again.frames)
    # The same in-memory components serve the image-to-video pipeline too: equal up to float32 reordering
    # between the loaded and the in-memory weights (tests/floats.py), not bit for bit.
    memory = _quiet(LTX2ImageToVideoPipeline(**tiny.tiny_ltx2_components()))
    assert_float32_close(memory(image=_image(), generator=_gen(), **_ltx2_kwargs(9)).frames, out.frames)


# ---------------------------------------------------------------------------------- Wan


def _wan_kwargs(num_frames):
    return dict(
        prompt=PROMPT,
        negative_prompt="blurry",
        width=32,
        height=32,
        num_frames=num_frames,
        num_inference_steps=2,
        output_type="np",
    )


@pytest.mark.parametrize("num_frames", [5, 9])
def test_wan_text_to_video(built, num_frames):
    folder = built["wan"]
    _check_folder(folder, "WanPipeline")
    pipe = _quiet(WanPipeline.from_pretrained(folder, use_safetensors=True))
    out = pipe(generator=_gen(), **_wan_kwargs(num_frames)).frames
    assert out.shape == (1, num_frames, 32, 32, 3)
    assert np.isfinite(out).all()
    assert np.array_equal(out, pipe(generator=_gen(), **_wan_kwargs(num_frames)).frames)

    # Loaded against in-memory weights: float32 reordering allowed (tests/floats.py); the rerun above is exact.
    memory = _quiet(WanPipeline(**tiny.tiny_wan_components()))
    assert_float32_close(out, memory(generator=_gen(), **_wan_kwargs(num_frames)).frames)


def test_wan_image_to_video(built):
    pipe = _quiet(WanImageToVideoPipeline.from_pretrained(built["wan"], use_safetensors=True))
    assert pipe.image_encoder is None and pipe.config.expand_timesteps
    out = pipe(image=_image(), generator=_gen(), **_wan_kwargs(9)).frames
    assert out.shape == (1, 9, 32, 32, 3)
    assert np.array_equal(out, pipe(image=_image(), generator=_gen(), **_wan_kwargs(9)).frames)

    # Loaded against in-memory weights: float32 reordering allowed (tests/floats.py); the rerun above is exact.
    memory = _quiet(WanImageToVideoPipeline(**tiny.tiny_wan_i2v_components()))
    assert_float32_close(out, memory(image=_image(), generator=_gen(), **_wan_kwargs(9)).frames)


# ---------------------------------------------------------------------------------- Stable Audio


def test_stable_audio(built):
    folder = built["stable-audio"]
    _check_folder(folder, "StableAudioPipeline")
    pipe = _quiet(StableAudioPipeline.from_pretrained(folder, use_safetensors=True))
    kwargs = dict(prompt=PROMPT, negative_prompt="silence", audio_end_in_s=1.0, num_inference_steps=2)

    audio = pipe(generator=_gen(), **kwargs).audios
    sample_rate = pipe.vae.sampling_rate
    assert sample_rate == 44100
    assert isinstance(audio, torch.Tensor) and audio.shape == (1, 2, sample_rate)
    assert torch.isfinite(audio).all()
    assert torch.equal(audio, pipe(generator=_gen(), **kwargs).audios)

    # Loaded against in-memory weights: float32 reordering (measured up to 3.1e-7 on sound peaking at 0.41),
    # not bit identity (tests/floats.py); the rerun above is exact.
    memory = _quiet(StableAudioPipeline(**tiny.tiny_stable_audio_components()))
    assert_float32_close(audio, memory(generator=_gen(), **kwargs).audios)


# ---------------------------------------------------------------------------------- building


def test_build_tiny_replaces_existing_folder(tmp_path):
    target = tmp_path / "wan"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    assert tiny.build_tiny("wan", target) == target
    assert not (target / "stale.txt").exists()
    assert (target / "model_index.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wan"]


def test_build_tiny_is_deterministic(tmp_path):
    a = tiny.build_tiny("stable-audio", tmp_path / "a")
    b = tiny.build_tiny("stable-audio", tmp_path / "b")
    for path in sorted(a.rglob("*.safetensors")):
        assert path.read_bytes() == (b / path.relative_to(a)).read_bytes()


def test_components_leave_global_rng_alone():
    torch.manual_seed(1234)
    expected = torch.rand(3)
    torch.manual_seed(1234)
    tiny.tiny_wan_components()
    assert torch.equal(torch.rand(3), expected)


def test_unknown_kind(tmp_path):
    with pytest.raises(ValueError, match="unknown tiny model kind"):
        tiny.build_tiny("sora", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_a_tiny_model_built_by_another_recipe_is_rebuilt_not_trusted(monkeypatch, tmp_path):
    """A kinema upgrade may change the toy architectures: a folder from before must not be loaded as is."""
    from kinema.backends.tiny import tiny_model_path
    from kinema.backends.tiny_parts import RECIPE_FILE, is_built

    monkeypatch.setenv("KINEMA_HOME", str(tmp_path))
    stale = tmp_path / "models" / "kinema--tiny-stable-audio"
    stale.mkdir(parents=True)
    (stale / "model_index.json").write_text('{"_class_name": "StableAudioPipeline"}')  # what an old build left
    (stale / RECIPE_FILE).write_text('{"recipe": "from-an-older-kinema"}')
    assert not is_built("stable-audio", stale)
    assert tiny_model_path("stable-audio") == stale
    assert is_built("stable-audio", stale) and (stale / "vae").is_dir()
