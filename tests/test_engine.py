"""The engine end to end on the embedded tiny LTX-2 and Wan models: real diffusers pipelines, real encoders."""

import numpy as np
import pytest
from floats import assert_uint8_within_one

import kinema
from kinema import CancelToken, GenerationCancelled, GenerationRequest
from kinema.media.files import probe

SMALL = dict(width=32, height=32, seconds=0.375, fps=24, steps=2)


@pytest.mark.parametrize("backend, frames", [("tiny-ltx2", 9), ("tiny-wan", 9)])
def test_clip_has_synchronised_audio(tmp_path, backend, frames):
    steps = []
    clip = kinema.generate(GenerationRequest("waves at dawn", backend=backend, seed=1, **SMALL), progress=steps.append)
    path = clip.save(tmp_path / "clip.mp4")

    info = probe(path)
    assert (info.width, info.height, info.frame_count, info.fps) == (32, 32, frames, 24)
    assert info.video_codec == "h264" and info.audio_codec == "aac"
    assert info.has_audio and info.sample_rate == clip.sample_rate
    assert abs(info.audio_duration - info.video_duration) <= 1024 / info.sample_rate
    assert [p.step for p in steps] == list(range(1, steps[-1].total + 1))
    assert clip.metadata["backend"] == backend and clip.metadata["seed"] == 1


def test_metadata_survives_the_file(tmp_path):
    clip = kinema.generate(GenerationRequest("a lighthouse", seed=7, backend="tiny-ltx2", **SMALL))
    loaded = kinema.Clip.load(clip.save(tmp_path / "c.mp4"))
    assert loaded.metadata["prompt"] == "a lighthouse"
    assert loaded.metadata["seed"] == 7 and loaded.metadata["model"] == "kinema/tiny-ltx2"
    assert loaded.frames.shape == clip.frames.shape


@pytest.mark.parametrize("backend", ["tiny-ltx2", "tiny-wan"])
def test_same_seed_same_clip(backend):
    request = GenerationRequest("a red fox in snow", backend=backend, seed=42, **SMALL)
    first, second = kinema.generate(request), kinema.generate(request)
    other = kinema.generate(request.with_(seed=43))
    assert np.array_equal(first.frames, second.frames)
    assert np.array_equal(first.audio, second.audio)
    assert not np.array_equal(first.frames, other.frames)


def test_cancel_stops_within_a_step_and_the_next_run_works():
    token = CancelToken()
    seen = []

    def progress(event):
        seen.append(event.step)
        if event.step == 2:
            token.cancel()

    request = GenerationRequest("storm at sea", seed=3, backend="tiny-ltx2", **{**SMALL, "steps": 6})
    with pytest.raises(GenerationCancelled):
        kinema.generate(request, progress=progress, cancel=token)
    assert seen == [1, 2]
    clip = kinema.generate(request)
    assert clip.frame_count == 9


@pytest.mark.parametrize("backend", ["tiny-ltx2", "tiny-wan"])
def test_first_frame_image(backend):
    image = np.zeros((48, 48, 3), np.uint8)
    image[:, 24:] = 255
    clip = kinema.generate(GenerationRequest("a door opens", backend=backend, image=image, seed=5, **SMALL))
    assert clip.frames.shape == (9, 32, 32, 3)
    assert clip.metadata["first_frame_image"] is True


def test_sizes_and_frames_are_snapped_and_reported():
    plan = kinema.plan(GenerationRequest("x", width=100, height=50, seconds=1, fps=24, backend="tiny-ltx2"))
    assert (plan.width, plan.height, plan.num_frames) == (96, 64, 25)
    assert any("width 100" in note for note in plan.notes)
    assert any("25" in note for note in plan.notes)


def test_style_reaches_the_model():
    clip = kinema.generate(GenerationRequest("a harbour at night", style="cinematic", seed=1, **SMALL))
    assert clip.metadata["prompt"].startswith("a harbour at night, cinematic shot")
    assert "flat lighting" in clip.metadata["negative_prompt"]


def test_progress_hook_sees_every_step():
    from kinema.hookspecs import hookimpl
    from kinema.plugins import load_plugins

    class Recorder:
        __name__ = "test-recorder"
        steps: list = []
        clips: list = []

        @hookimpl
        def generation_progress(self, progress):
            self.steps.append(progress.step)

        @hookimpl
        def clip_generated(self, clip):
            self.clips.append(clip)

    pm = load_plugins()
    recorder = Recorder()
    pm.register(recorder, name="test-recorder")
    try:
        kinema.generate(GenerationRequest("rain", seed=1, **SMALL))
    finally:
        pm.unregister(name="test-recorder")
    assert recorder.steps == [1, 2] and len(recorder.clips) == 1


def test_ltx2_backend_loads_a_local_model_folder(tmp_path):
    """The real loading path (from_pretrained, safetensors only) on a folder holding the tiny LTX-2."""
    from kinema.backends.ltx2 import LTX2Backend
    from kinema.backends.tiny_parts import build_tiny, tiny_ltx2_components

    folder = build_tiny("ltx2", tmp_path / "my-ltx2")
    request = GenerationRequest("a kite", backend="ltx2", model=str(folder), seed=2, **SMALL)
    clip = kinema.generate(request)
    in_memory = LTX2Backend(components=tiny_ltx2_components(), device="cpu")
    reference = kinema.generate(request.with_(model=None), backend=in_memory)
    assert clip.metadata["model"] == str(folder) and clip.metadata["backend"] == "ltx2"
    # Loaded against in-memory weights: float32 reordering can tip a frame value by one level (tests/floats.py).
    assert_uint8_within_one(clip.frames, reference.frames)


def test_backends_take_components_a_host_already_loaded():
    from kinema.backends.ltx2 import LTX2Backend
    from kinema.backends.tiny import TinyBackend
    from kinema.backends.tiny_parts import tiny_ltx2_components, tiny_stable_audio_components, tiny_wan_components
    from kinema.backends.wan import WanBackend

    class InMemory(LTX2Backend):
        pipeline_kwargs = TinyBackend.pipeline_kwargs

    ltx2 = InMemory(components=tiny_ltx2_components(), device="cpu")
    assert ltx2.status().ready
    clip = kinema.generate(GenerationRequest("owls", seed=1, **SMALL), backend=ltx2)
    assert clip.frames.shape == (9, 32, 32, 3) and clip.audio.shape[0] == 2

    wan = WanBackend(components=tiny_wan_components(), audio_components=tiny_stable_audio_components(), device="cpu")
    clip = kinema.generate(GenerationRequest("owls", seed=1, **SMALL), backend=wan)
    assert clip.frames.shape == (9, 32, 32, 3) and clip.sample_rate == 44100


def test_wan_without_its_sound_model_says_how_to_get_it_or_skip_it():
    from kinema.backends.tiny_parts import tiny_wan_components
    from kinema.backends.wan import WanBackend

    wan = WanBackend(components=tiny_wan_components(), device="cpu")
    with pytest.raises(kinema.MissingWeightsError, match="stable-audio-open-1.0.*--no-audio"):
        kinema.generate(GenerationRequest("owls", seed=1, **SMALL), backend=wan)
    silent = kinema.generate(GenerationRequest("owls", seed=1, audio=False, **SMALL), backend=wan)
    assert silent.audio is None
