"""Storyboards, extend and remix on the embedded tiny models: real diffusers pipelines, spied at their call."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

import kinema
from kinema.cli import cli
from kinema.media.assemble import Piece, join
from kinema.media.files import probe
from kinema.storyboard import StoryboardError, load_storyboard, parse_storyboard, plan_storyboard, run_storyboard
from kinema.styles import get_style

HEADER = "Size: 32x32\nSteps: 2\nFps: 24\nBackend: tiny-ltx2\n"  # random weights: quick, any size


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def pipeline_calls(monkeypatch):
    """Every call that reaches a real LTX-2 or Wan diffusers pipeline, with the arguments it got."""
    from diffusers import (
        LTX2ConditionPipeline,
        LTX2ImageToVideoPipeline,
        LTX2Pipeline,
        WanImageToVideoPipeline,
        WanPipeline,
        WanVideoToVideoPipeline,
    )

    calls = []
    for cls in (
        LTX2Pipeline,
        LTX2ImageToVideoPipeline,
        LTX2ConditionPipeline,
        WanPipeline,
        WanImageToVideoPipeline,
        WanVideoToVideoPipeline,
    ):
        original = cls.__call__

        def spy(self, *args, _original=original, _cls=cls, **kwargs):
            calls.append({"pipeline": _cls.__name__, **kwargs})
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "__call__", spy)
    return calls


def write(tmp_path, text, name="board.txt"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_three_shots_make_one_film_as_long_as_the_shots_with_continuous_sound(tmp_path):
    board = write(
        tmp_path,
        HEADER + "Shot 1 (0.25s): a fox in snow\nShot 2 (0.375s): an owl\nShot 3 (0.25s, continue): it flies\n",
    )
    out = tmp_path / "film.mp4"
    result = CliRunner().invoke(cli, ["storyboard", str(board), "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "3 shots, made 1, 2, 3" in result.output

    info = probe(out)
    assert info.frame_count == 6 + 9 + 6
    assert abs(info.video_duration - 0.875) <= 1 / 24
    assert info.has_audio and abs(info.audio_duration - info.video_duration) < 1e-3
    film = kinema.Clip.load(out)
    assert [s["frames"] for s in film.metadata["shots"]] == [6, 9, 6]
    assert film.metadata["shots"][2]["cut"] == "continue"

    # The sound never stops at a cut: every 5 ms of it has signal (but the last shot's own end padding).
    made = run_storyboard(load_storyboard(board))
    audio = made.film.audio
    assert audio.shape[1] == round(made.film.frame_count * made.film.sample_rate / 24)
    window = made.film.sample_rate // 200
    end = audio.shape[1] - made.film.sample_rate // 20
    rms = [np.sqrt(np.mean(audio[:, i : i + window] ** 2)) for i in range(0, end - window, window)]
    assert min(rms) > 1e-4
    assert made.regenerated == []  # the CLI run filled the cache


def test_continue_gives_the_pipeline_the_previous_shots_last_frame_and_a_hard_cut_does_not(tmp_path, pipeline_calls):
    board = parse_storyboard(
        HEADER + "Shot 1 (0.25s): a door\nShot 2 (0.25s, continue): it opens\nShot 3 (0.25s): a hallway\n"
    )
    result = run_storyboard(board)

    assert [c["pipeline"] for c in pipeline_calls] == ["LTX2Pipeline", "LTX2ImageToVideoPipeline", "LTX2Pipeline"]
    given = np.asarray(pipeline_calls[1]["image"])
    assert np.array_equal(given, result.shots[0].clip.frames[-1])
    assert "image" not in pipeline_calls[2]
    # The film shows shot 1's last frame right before shot 2's first, with no repeated frame.
    assert np.array_equal(result.film.frames[5], given)
    assert result.shots[1].generated.frame_count == 9 and result.shots[1].plan.head == 1


def test_editing_shot_2_remakes_it_and_the_continue_shot_after_it_only(tmp_path, pipeline_calls):
    text = HEADER + (
        "Shot 1 (0.25s): a lake\nShot 2 (0.25s): a boat\n"
        "Shot 3 (0.25s, continue): the boat sails\nShot 4 (0.25s): a lighthouse\n"
    )
    first = run_storyboard(parse_storyboard(text))
    assert first.regenerated == [1, 2, 3, 4]
    pipeline_calls.clear()

    edited = run_storyboard(parse_storyboard(text.replace("a boat", "a red boat")))
    assert edited.regenerated == [2, 3]
    assert len(pipeline_calls) == 2 and "a red boat" in pipeline_calls[0]["prompt"]
    assert np.array_equal(edited.film.frames[:6], first.film.frames[:6])
    assert np.array_equal(edited.film.frames[18:], first.film.frames[18:])
    assert not np.array_equal(edited.film.frames[6:12], first.film.frames[6:12])


def test_the_storyboards_tier_reaches_every_shot(pipeline_calls):
    run_storyboard(
        parse_storyboard("Size: 32x32\nTier: draft\nBackend: tiny-ltx2\nShot 1 (0.25s): boats\nShot 2 (0.25s): gulls\n")
    )
    from kinema.tiers import TIERS

    assert TIERS["draft"] != TIERS["standard"]
    draft_steps = kinema.get_backend("tiny-ltx2").plan(kinema.GenerationRequest("x", tier="draft")).steps
    assert [call["num_inference_steps"] for call in pipeline_calls] == [draft_steps, draft_steps]
    assert draft_steps < kinema.get_backend("tiny-ltx2").defaults.steps


def test_a_style_changes_the_prompt_and_parameters_that_reach_the_pipeline(tmp_path, pipeline_calls, kinema_env):
    styles = kinema_env / "styles"
    styles.mkdir()
    (styles / "inky.json").write_text(
        json.dumps(
            {"name": "inky", "prompt": "ink wash painting", "negative_prompt": "photo", "guidance": 2.5, "steps": 3}
        )
    )
    text = (
        "Size: 32x32\nStyle: inky\nSetting: a harbour\nBackend: tiny-ltx2\n"
        "Shot 1 (0.25s): boats\nShot 2 (0.25s): gulls\n  Style: cinematic\n"
    )
    run_storyboard(parse_storyboard(text))

    first, second = pipeline_calls
    assert first["prompt"] == "boats. Setting: a harbour, ink wash painting"
    assert first["negative_prompt"] == "photo"
    assert (first["guidance_scale"], first["num_inference_steps"]) == (2.5, 3)
    assert second["prompt"].startswith("gulls. Setting: a harbour, cinematic shot")
    assert second["guidance_scale"] == 4.5  # cinematic's; the tiny backend's default steps
    assert second["num_inference_steps"] == kinema.get_backend("tiny-ltx2").defaults.steps


def test_extend_continues_from_the_last_frames_and_records_the_parent(tmp_path, pipeline_calls):
    parent = kinema.generate(
        kinema.GenerationRequest(
            "a kite", width=32, height=32, seconds=0.75, fps=24, steps=2, seed=1, tier="draft", backend="tiny-ltx2"
        )
    )
    path = parent.save(tmp_path / "kite.mp4")
    stored = kinema.Clip.load(path)
    out = tmp_path / "longer.mp4"
    result = CliRunner().invoke(
        cli,
        ["extend", str(path), "--seconds", "0.25", "--steps", "2", "--seed", "2", "-o", str(out)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output

    call = pipeline_calls[-1]
    assert call["pipeline"] == "LTX2ConditionPipeline"
    (condition,) = call["conditions"]
    assert np.array_equal(condition.frames, stored.frames[-17:]) and condition.strength == 1.0
    info = probe(out)
    assert info.frame_count == 17 + 6 and abs(info.audio_duration - info.video_duration) < 1e-3
    longer = kinema.Clip.load(out)
    assert longer.metadata["kind"] == "extend" and longer.metadata["prompt"] == "a kite"
    assert longer.metadata["tier"] == "draft"  # the parent's, as no --tier was given
    assert longer.metadata["parent"]["path"] == str(path.resolve())
    assert len(longer.metadata["parent"]["sha256"]) == 64
    mse = np.mean((longer.frames[:17].astype(float) - stored.frames.astype(float)) ** 2)
    assert 10 * np.log10(255**2 / mse) > 25  # the parent's frames, encoded once more


def test_extend_on_an_image_only_backend_continues_from_the_last_frame(tmp_path):
    from kinema.extend import ExtendRequest, extend

    parent = kinema.generate(
        kinema.GenerationRequest(
            "a kite", backend="tiny-wan", width=32, height=32, seconds=0.375, fps=24, steps=2, seed=1, audio=False
        )
    )
    longer = extend(ExtendRequest(parent, 0.25, steps=2, seed=3))
    assert longer.frame_count == 9 + 6 and longer.audio is None
    assert longer.metadata["continued_from_frames"] == 1 and longer.metadata["backend"] == "tiny-wan"
    assert "content_sha256" in longer.metadata["parent"]


@pytest.mark.parametrize("backend", ["tiny-ltx2", "tiny-wan"])
def test_remix_keeps_length_and_records_the_parent(tmp_path, backend, pipeline_calls):
    parent = kinema.generate(
        kinema.GenerationRequest(
            "a kite",
            backend=backend,
            width=32,
            height=32,
            seconds=0.375,
            fps=24,
            steps=2,
            seed=1,
            audio=backend == "tiny-ltx2",
        )
    )
    path = parent.save(tmp_path / "kite.mp4")
    out = tmp_path / "remix.mp4"
    args = ["remix", str(path), "a paper kite", "--strength", "0.5", "--steps", "4", "--tier", "final", "-o", str(out)]
    result = CliRunner().invoke(cli, args + (["--keep-audio"] if backend == "tiny-wan" else []), catch_exceptions=False)
    assert result.exit_code == 0, result.output

    remixed = kinema.Clip.load(out)
    assert remixed.frame_count == parent.frame_count and remixed.metadata["strength"] == 0.5
    assert remixed.metadata["kind"] == "remix" and remixed.metadata["parent"]["prompt"] == "a kite"
    assert remixed.metadata["backend"] == backend and remixed.metadata["prompt"] == "a paper kite"
    assert remixed.metadata["tier"] == "final"
    if backend == "tiny-ltx2":
        (condition,) = pipeline_calls[-1]["conditions"]
        assert condition.strength == pytest.approx(0.5) and len(condition.frames) == 9
        assert remixed.audio is not None and remixed.metadata["audio_from"] == "remix"
    else:
        assert remixed.audio is None and remixed.metadata["audio_from"] == "parent"
        call = pipeline_calls[-1]  # Wan's own video-to-video, given the parent's frames
        assert call["pipeline"] == "WanVideoToVideoPipeline" and call["strength"] == pytest.approx(0.5)
        stored = kinema.Clip.load(path).frames
        assert np.array_equal(np.stack([np.asarray(frame) for frame in call["video"]]), stored)


def test_remix_refuses_a_backend_that_cannot(tmp_path):
    from kinema.backends.tiny import TinyBackend
    from kinema.remix import RemixRequest, remix

    class NoRemix(TinyBackend):
        supports_remix = False

    parent = kinema.Clip(np.zeros((9, 32, 32, 3), np.uint8), 24, metadata={"prompt": "x"})
    with pytest.raises(kinema.InvalidRequestError, match="cannot remix"):
        remix(RemixRequest(parent, "y"), backend_obj=NoRemix())


BAD = [
    ("text", "Title: nothing here\n", 2, "no shots"),
    ("yaml", "title: x\n", 1, "no shots"),
    ("yaml", "title: x\nshots: []\n", 2, "no shots"),
    ("text", "Shot 1 (2s): a\nShot 2 (-1s): b\n", 2, "must be more than 0"),
    ("yaml", "shots:\n  - prompt: a\n    seconds: 2\n  - prompt: b\n    seconds: -3\n", 5, "must be more than 0"),
    ("yaml", "shots:\n  - prompt: a\n    style: baroque\n", 2, "unknown style 'baroque'"),
    ("yaml", "shots:\n  - prompt: a\n    cameos: [nobody]\n", 2, "unknown cameo 'nobody'"),
    ("yaml", "shots:\n  - prompt: a\n    seconds: 2\n   cut: hard\n", 4, "not valid YAML"),
    ("yaml", "shots:\n  - prompt: [unclosed\n", 3, "not valid YAML"),
    ("json", '{"shots": [\n  {"prompt": "a",}\n]}', 2, "not valid JSON"),
    ("yaml", "shots:\n  - prompt: a\n    secs: 2\n", 3, "did you mean 'seconds'"),
    ("text", "Shot 1 (2s, continue): a\n", 1, "shot 1 cannot 'continue'"),
    ("text", "Shot 1 (2s): a\n  Camra: close-up\n", 2, "did you mean 'camera'"),
    ("text", "a fox runs\n", 1, "expected 'Shot 1 (2s): what happens'"),
    ("yaml", "shots:\n  - prompt: a\n    cut: sideways\n", 3, "cut must be 'hard' or 'continue'"),
    ("yaml", "shots:\n  - seconds: 2\n", 2, "has no prompt"),
    ("yaml", "tier: ultra\nshots:\n  - prompt: a\n", 1, "tier must be one of draft, standard, final"),
]


@pytest.mark.parametrize("kind, text, line, message", BAD)
def test_malformed_storyboards_say_which_line(tmp_path, kind, text, line, message):
    path = write(tmp_path, text, name={"text": "b.txt", "yaml": "b.yaml", "json": "b.json"}[kind])
    with pytest.raises(StoryboardError) as caught:
        load_storyboard(path)
    shown = str(caught.value)
    assert message in shown
    assert shown.startswith(f"{path}, line {line}: ") if line else shown.startswith(f"{path}: ")


def test_every_problem_is_reported_at_once(tmp_path):
    path = write(tmp_path, "shots:\n  - prompt: a\n    seconds: -1\n  - prompt: b\n    cut: maybe\n", "b.yaml")
    result = CliRunner().invoke(cli, ["storyboard", str(path), "-o", str(tmp_path / "f.mp4")])
    assert result.exit_code != 0
    assert "has 2 problems" in result.output and "line 3:" in result.output and "line 5:" in result.output
    assert not (tmp_path / "f.mp4").exists()


def test_yaml_and_text_give_the_same_storyboard(tmp_path):
    yaml_text = """
title: Night market
world:
  setting: a rainy night market
  characters:
    Mara: a woman in a yellow raincoat
  style: cinematic
seed: 7
shots:
  - prompt: Mara walks between the stalls
    seconds: 2
    camera: slow dolly in
  - prompt: she turns
    seconds: 1.5
    cut: continue
    dialogue:
      - Mara: Where did it go?
"""
    plain = """Title: Night market
Setting: a rainy night market
Character: Mara: a woman in a yellow raincoat
Style: cinematic
Seed: 7
Shot 1 (2s): Mara walks between the stalls
  Camera: slow dolly in
Shot 2 (1.5s, continue): she turns
  Mara: "Where did it go?"
"""
    from_yaml = load_storyboard(write(tmp_path, yaml_text, "b.yaml"))
    from_text = load_storyboard(write(tmp_path, plain, "b.txt"))
    strip = lambda board: [(s.prompt, s.seconds, s.camera, s.cut, s.dialogue) for s in board.shots]  # noqa: E731
    assert strip(from_yaml) == strip(from_text)
    assert from_yaml.world == from_text.world and from_yaml.seed == from_text.seed == 7
    plans = plan_storyboard(from_yaml)
    assert [p.seed for p in plans] == [7, 8]
    assert plans[1].prompt == (
        'she turns. Mara: a woman in a yellow raincoat. Setting: a rainy night market. Mara says: "Where did it go?"'
    )
    # The default backend, the demo world, makes 12 fps and 4k+1 frames.
    assert [p.frames for p in plans] == [24, 18] and [p.generated for p in plans] == [25, 21]


def test_plan_prints_frames_and_seeds_without_generating(tmp_path, pipeline_calls):
    path = write(tmp_path, "Backend: tiny-ltx2\nShot 1 (1s): a\nShot 2 (0.5s, continue): b\n")
    result = CliRunner().invoke(cli, ["storyboard", str(path), "--plan", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "2 shots, 36 frames = 1.500 s at 24 fps on tiny-ltx2" in result.output
    assert pipeline_calls == []


def test_plan_shows_each_prompt_in_full_with_the_styles_text(tmp_path, pipeline_calls):
    board = "Setting: a rainy night market\nStyle: cinematic\nShot 1 (1s): a fox\nShot 2 (1s): an owl\n  Style: noir\n"
    result = CliRunner().invoke(cli, ["storyboard", str(write(tmp_path, board)), "--plan"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    cinematic, noir = get_style("cinematic"), get_style("noir")
    assert lines[1].endswith(f"a fox. Setting: a rainy night market, {cinematic.prompt}")
    assert lines[2].split() == ["negative:", *cinematic.negative_prompt.split()]
    assert lines[3].endswith(f"an owl. Setting: a rainy night market, {noir.prompt}")
    assert lines[2].index("negative:") == lines[1].index("a fox")  # under the prompt column
    assert pipeline_calls == []


def test_crossfades_hide_the_cut_and_keep_the_length():
    fps, rate = 24, 24000
    frames = np.zeros((6, 16, 16, 3), np.uint8)
    loud = np.full((1, 8000), 0.5, np.float32)
    padded = loud.copy()
    padded[:, -1500:] = 0.0  # a backend's zero padding after the sound ran short
    quiet = np.full((1, 8000), -0.5, np.float32)
    _, audio = join([Piece(frames, padded), Piece(frames, quiet, audio_offset=1000)], fps, rate)
    assert audio.shape == (1, 12000)
    assert np.abs(np.diff(audio[0])).max() < 0.01  # a hard cut would jump by 1.0
    assert np.abs(audio[0, :5000]).min() > 0.3 and np.abs(audio[0, 7000:]).min() > 0.3  # no gap, no dip


def _small_clip(value: int):
    from fractions import Fraction

    frames = np.full((3, 16, 16, 3), value, np.uint8)
    return kinema.Clip(frames, Fraction(24), np.zeros((2, 100), np.float32), 16000, {"value": value})


def test_shot_cache_keeps_to_its_size_limit_dropping_the_least_recently_used(tmp_path):
    import os
    import time

    from kinema.storyboard import ShotCache

    one = ShotCache(tmp_path, limit_bytes=10**9).put("a", _small_clip(1)).stat().st_size
    cache = ShotCache(tmp_path, limit_bytes=2 * one)
    stale = tmp_path / ".x.npz.1.2.part"  # left by a run that died mid-write
    stale.write_bytes(b"half")
    os.utime(stale, (time.time() - 7200,) * 2)
    past = time.time() - 100
    cache.put("b", _small_clip(2))
    os.utime(cache.path("a"), (past, past))
    os.utime(cache.path("b"), (past + 1, past + 1))
    assert cache.get("a").metadata["value"] == 1  # used just now: "b" is now the least recently used
    cache.put("c", _small_clip(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "c.npz"]
    assert ShotCache(tmp_path, limit_bytes=0).put("d", _small_clip(4)).exists()  # the shot just made stays
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz"]


@pytest.mark.parametrize("value", ["lots", "-1", "nan"])
def test_shot_cache_limit_from_the_environment_is_checked(monkeypatch, value):
    from kinema.errors import InvalidRequestError
    from kinema.storyboard import ShotCache

    monkeypatch.setenv("KINEMA_SHOT_CACHE_GB", value)
    with pytest.raises(InvalidRequestError, match="KINEMA_SHOT_CACHE_GB must be a number of gigabytes"):
        ShotCache()
    monkeypatch.setenv("KINEMA_SHOT_CACHE_GB", "0.5")
    assert ShotCache().limit_bytes == 500_000_000
