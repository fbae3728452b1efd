"""The demo world (kinema.world): deterministic, physically consistent, and measurable by its detectors.

Pure numpy; no model, no torch. The detector test is the gate issue 15 sets before any model figure
counts: >= 98 % on the world's own renders.
"""

import ast
import itertools
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kinema.world import (
    COLOURS,
    FLOORS,
    GRAVITY,
    HELD_OUT,
    RESTITUTION,
    SIZES,
    VOCABULARY,
    WALLS,
    Scene,
    caption,
    caption_attributes,
    make_preview_strip,
    render,
    sample_scene,
    simulate,
    unknown_words,
)
from kinema.world.detect import detect_clip, detect_onsets, frame_psnr, physics_report, sync_report
from kinema.world.physics import REST_SPEED
from kinema.world.render import BALL_RGB, WALL_RGB

WORLD = Path(__file__).resolve().parent.parent / "core" / "kinema" / "world"


def scenes(n, seed, split="any"):
    rng = np.random.default_rng(seed)
    return [sample_scene(rng, split=split) for _ in range(n)]


def test_the_world_imports_only_numpy():
    """The world and its instruments move as a unit: numpy (and PIL for previews), nothing else from kinema.
    (import-linter's "world" contract says the same for the whole import graph; this reads the files.)"""
    allowed = {"numpy", "math", "dataclasses", "functools", "itertools", "re", "io", "PIL", "__future__"}
    for name in ("__init__", "scene", "physics", "render", "captions", "detect"):
        path = WORLD / f"{name}.py"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kinema"):
                own = {"kinema.world." + m for m in ("scene", "physics", "render", "captions", "detect")}
                assert node.level == 0 and node.module in own, f"{path.name} imports {node.module}"
                continue
            elif isinstance(node, ast.ImportFrom):
                names = [] if node.level else [node.module.split(".")[0]]
            else:
                continue
            assert set(names) <= allowed, f"{path.name} imports {names}"
    code = "import sys, kinema.world; assert 'torch' not in sys.modules, 'torch'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_names_and_held_out_pairs():
    assert len(COLOURS) == 6 and len(SIZES) == 2 and len(WALLS) == 4 and len(FLOORS) == 2
    assert set(BALL_RGB) == set(COLOURS) and set(WALL_RGB) == set(WALLS)
    assert len(HELD_OUT) == 4
    assert len({c for c, _ in HELD_OUT}) == 4
    assert all(sum(w == wall for _, w in HELD_OUT) <= 2 for wall in WALLS)
    assert all(c in COLOURS and w in WALLS for c, w in HELD_OUT)


def test_train_never_draws_a_held_out_pair_and_held_out_draws_only_them():
    rng = np.random.default_rng(0)
    train = {(s.colour, s.wall) for s in (sample_scene(rng) for _ in range(3000))}
    assert not train & HELD_OUT
    assert len(train) == len(COLOURS) * len(WALLS) - len(HELD_OUT)  # and every other pair does come up
    held = {(s.colour, s.wall) for s in (sample_scene(rng, split="held_out") for _ in range(300))}
    assert held == set(HELD_OUT)
    with pytest.raises(ValueError):
        sample_scene(rng, split="test")


def test_same_scene_same_clip_and_the_seed_only_changes_the_sound():
    scene = scenes(1, 1)[0]
    a, b = render(scene), render(scene)
    assert a.frames.dtype == np.uint8 and a.frames.shape == (25, 64, 64, 3)
    assert a.audio.dtype == np.float32 and len(a.audio) == round(25 / 12 * 16000)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.audio, b.audio)
    assert np.abs(a.audio).max() <= 1.0
    other = render(Scene(**{**scene.to_dict(), "seed": scene.seed + 1}))
    assert np.array_equal(other.frames, a.frames) and not np.array_equal(other.audio, a.audio)


def test_physics_gravity_restitution_and_rest():
    for scene in scenes(40, 2):
        traj = simulate(scene, 6.0, 120.0)
        contacts = traj.all_contacts
        assert contacts[-1].rests and traj.rest_time == contacts[-1].time
        e = RESTITUTION[scene.floor]
        for before, after in itertools.pairwise(contacts):
            assert after.speed == pytest.approx(e * before.speed, rel=1e-9)  # rebound then free fall back
            assert e * after.speed >= REST_SPEED or after.rests
        # between contacts the height is a parabola with the world's gravity
        t = traj.times
        flight = (
            (t > contacts[0].time + 0.01) & (t < contacts[1].time - 0.01) if len(contacts) > 1 else t < contacts[0].time
        )
        coef = np.polyfit(t[flight], traj.centers[flight, 1], 2)
        assert 2 * coef[0] == pytest.approx(GRAVITY, rel=1e-6)
        assert np.all(traj.centers[t > traj.rest_time + 1.0, 1] == traj.centers[-1, 1])  # at rest


def test_default_clips_have_a_long_first_fall_and_one_to_four_bounces():
    for scene in scenes(300, 3):
        traj = simulate(scene, 25 / 12, 12.0)
        times = [c.time for c in traj.contacts]
        assert 2 <= len(times) <= 5  # 1-4 bounces after the first contact
        assert times[0] * 12 >= 5  # frames 0..5 are in the air
        assert (times[1] - times[0]) * 12 >= 5  # so is the second flight: the physics check has two


def test_a_clip_continues_from_start_time_seamlessly():
    scene = scenes(1, 4, split="any")[0]
    t1 = 25 / 12
    whole = render(scene, seconds=2 * t1)
    first = render(scene, seconds=t1)
    second = render(scene, seconds=t1, start_time=t1)
    assert np.array_equal(np.concatenate([first.frames, second.frames]), whole.frames)
    joined = np.concatenate([first.audio, second.audio])
    assert np.allclose(joined, whole.audio[: len(joined)], atol=1e-6)
    assert np.allclose(np.concatenate([first.truth.centers, second.truth.centers]), whole.truth.centers)
    shifted = [(t + t1, f + 25, s + len(first.audio)) for t, f, s, _ in second.truth.contacts]
    later = [c[:3] for c in whole.truth.contacts if c[0] >= t1]
    assert [s for *_, s in shifted] == [s for *_, s in later]
    assert np.allclose([f for _, f, _ in shifted], [f for _, f, _ in later])


def test_every_contact_sounds_from_its_exact_sample():
    for scene in scenes(12, 5):
        clip = render(scene)
        sr = clip.sample_rate
        assert clip.truth.contacts
        for t, frame, sample, _ in clip.truth.contacts:
            assert sample == math.ceil(t * sr - 1e-9) and frame == pytest.approx(t * clip.fps)
            before = np.abs(clip.audio[max(sample - 40, 0) : sample]).max()
            after = np.abs(clip.audio[sample : sample + 40]).max()
            assert after > 10 * before  # silence (room tone) up to the sample, the impact from it on
        onsets = detect_onsets(clip.audio, sr)
        truth = [c[0] for c in clip.truth.contacts]
        assert len(onsets) == len(truth)
        assert np.abs(np.array(onsets) - np.array(truth)).max() < 0.003  # within 3 ms


def test_sound_follows_speed_size_and_floor():
    def first_impact(**kw):
        clip = render(
            Scene(
                **{
                    "colour": "red",
                    "size": "small",
                    "wall": "white",
                    "floor": "wood",
                    "x0": 32.0,
                    "y0": 15.0,
                    "seed": 3,
                    **kw,
                }
            )
        )
        s = clip.truth.contacts[0][2]
        seg = clip.audio[s : s + 800].astype(np.float64)
        spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg))))
        freqs = np.fft.rfftfreq(len(seg), 1 / clip.sample_rate)
        tail = np.abs(clip.audio[s + 1600 : s + 2400]).max()
        return np.abs(seg).max(), (spec * freqs).sum() / spec.sum(), tail

    high_drop, _, _ = first_impact()
    low_drop, _, _ = first_impact(y0=25.0)
    assert high_drop > low_drop  # louder when faster
    _, small_c, _ = first_impact(floor="tiles")
    _, large_c, _ = first_impact(floor="tiles", size="large")
    assert small_c > large_c  # small balls sound higher
    _, wood_c, wood_tail = first_impact()
    _, tile_c, tile_tail = first_impact(floor="tiles")
    assert tile_c > 1.5 * wood_c and tile_tail > 4 * wood_tail  # tiles: brighter and ringing


def test_captions_name_everything_in_the_vocabulary_with_variety():
    rng = np.random.default_rng(6)
    for scene in scenes(200, 6):
        text = caption(scene, rng)
        assert unknown_words(text) == []
        assert caption_attributes(text) == {
            "colour": scene.colour,
            "size": scene.size,
            "wall": scene.wall,
            "floor": scene.floor,
        }, text
    scene = scenes(1, 7)[0]
    assert len({caption(scene, rng) for _ in range(200)}) >= 40
    assert unknown_words("a red fox jumps") == ["fox", "jumps"]
    assert {"ball", "red", "wooden", "tiled", "pink", "large"} <= VOCABULARY


def test_detectors_score_at_least_98_percent_on_the_worlds_renders():
    n = 100
    right = {"colour": 0, "size": 0, "wall": 0, "floor": 0, "physics": 0}
    contacts = with_onset = onsets = lonely = 0
    for scene in scenes(n, 8):
        clip = render(scene)
        m = detect_clip(clip.frames, clip.audio, clip.fps, clip.sample_rate)
        for key in ("colour", "size", "wall", "floor"):
            right[key] += getattr(m, key) == getattr(scene, key)
        right["physics"] += physics_report(m)["passed"]
        sync = sync_report(m.contact_times, m.onsets, clip.fps)
        contacts += sync["contacts"]
        with_onset += round(sync["contacts_with_onset"] * sync["contacts"])
        onsets += sync["onsets"]
        lonely += round(sync["onsets_without_contact"] * sync["onsets"])
    for key, count in right.items():
        assert count / n >= 0.98, (key, count)
    assert with_onset / contacts >= 0.98 and lonely / onsets <= 0.02


def test_detected_track_and_contacts_match_the_truth():
    for scene in scenes(10, 9):
        clip = render(scene)
        m = detect_clip(clip.frames, clip.audio, clip.fps, clip.sample_rate)
        found = np.array([c is not None for c in m.track])
        assert found.all()
        assert np.abs(m.centers - clip.truth.centers).max() < 0.5
        assert m.radius_px == pytest.approx(clip.truth.radius_px, rel=0.1)
        truth = [c[1] for c in clip.truth.contacts]
        assert len(m.contacts) == len(truth)
        assert np.abs(np.array(m.contacts) - np.array(truth)).max() < 0.25  # frames


def test_physics_report_rejects_a_ball_that_does_not_fall():
    clip = render(scenes(1, 10)[0])
    m = detect_clip(clip.frames, clip.audio, clip.fps, clip.sample_rate)
    assert physics_report(m)["passed"]
    frozen = np.repeat(clip.frames[:1], len(clip.frames), axis=0)
    assert not physics_report(detect_clip(frozen, clip.audio, clip.fps, clip.sample_rate))["passed"]
    backwards = clip.frames[::-1]  # rises with gravity pointing up: fitted gravity has the wrong sign
    m_back = detect_clip(backwards, clip.audio, clip.fps, clip.sample_rate)
    assert not physics_report(m_back)["passed"]
    shuffled = clip.frames[np.random.default_rng(0).permutation(len(clip.frames))]
    assert not physics_report(detect_clip(shuffled, clip.audio, clip.fps, clip.sample_rate))["passed"]


def test_sync_report_and_psnr():
    report = sync_report([0.5, 1.0, 1.5], [0.51, 1.0, 1.8, 2.5], fps=12)
    assert report["contacts_with_onset"] == pytest.approx(2 / 3)
    assert report["onsets_without_contact"] == pytest.approx(2 / 4)
    assert report["median_offset_ms"] == pytest.approx(10.0)
    frame = render(scenes(1, 11)[0]).frames[0]
    assert frame_psnr(frame, frame) == math.inf
    noisy = np.clip(frame + np.random.default_rng(0).normal(0, 5, frame.shape), 0, 255).astype(np.uint8)
    assert 30 < frame_psnr(frame, noisy) < 40


def test_other_sizes_and_preview_strip():
    scene = scenes(1, 12)[0]
    clip = render(scene, width=96, height=48, fps=24.0, seconds=1.0)
    assert clip.frames.shape == (24, 48, 96, 3)
    m = detect_clip(clip.frames, clip.audio, clip.fps, clip.sample_rate)
    assert (m.colour, m.size, m.wall, m.floor) == (scene.colour, scene.size, scene.wall, scene.floor)
    png = make_preview_strip(clip.frames, every=4, scale=2)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
