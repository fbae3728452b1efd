"""The command line: the main job, and every bad input giving one clear line and no file."""

import json
import os
import resource
import signal
import subprocess
import sys

import pytest
from click.testing import CliRunner

from kinema.cli import cli
from kinema.clip import Clip
from kinema.media.files import probe

FAST = ["--size", "32x32", "--seconds", "0.375", "--steps", "2", "--backend", "tiny-ltx2"]  # random weights: quick


def run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_the_default_is_the_demo_world_and_makes_what_the_prompt_asks(tmp_path):
    """README command 1, as written: the default backend is the trained demo world, at its own size and rate."""
    from kinema.world import detect

    out = tmp_path / "ball.mp4"
    prompt = "a big red ball drops onto a wooden floor in a room with pink walls"
    result = run("generate", prompt, "--seed", "1", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "demo world" in result.output and "does not know" not in result.output
    info = probe(out)
    assert (info.width, info.height, info.frame_count, info.has_audio) == (64, 64, 25, True)
    clip = Clip.load(out)
    seen = detect.detect_clip(clip.frames, clip.audio.mean(axis=0), float(clip.fps), clip.sample_rate)
    assert (seen.colour, seen.size, seen.wall, seen.floor) == ("red", "large", "pink", "wood")


def test_generate_writes_a_clip_with_sound(tmp_path):
    out = tmp_path / "fox.mp4"
    result = run("generate", "a red fox running through snow", "-o", str(out), "--seed", "4", *FAST)
    assert result.exit_code == 0, result.output
    assert "tiny demo model (random weights" in result.output
    info = probe(out)
    assert info.frame_count == 9 and info.has_audio
    assert [p.name for p in tmp_path.iterdir()] == ["fox.mp4"]


@pytest.fixture
def files(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a picture")
    (tmp_path / "adir.mp4").mkdir()
    return tmp_path


BAD_INPUTS = [
    # (arguments after the prompt, prompt, expected words in the message)
    ([], "", "prompt is empty"),
    ([], "   ", "prompt is empty"),
    ([], "x" * 5000, "keep it under 4000"),
    (["--seconds", "0"], "p", "seconds must be in (0"),
    (["--seconds", "-2"], "p", "seconds must be in (0"),
    (["--seconds", "3600"], "p", "use a storyboard"),
    (["--seconds", "nan"], "p", "seconds must be a number"),
    (["--fps", "0"], "p", "fps must be in [1"),
    (["--fps", "1000"], "p", "fps must be in [1"),
    (["--size", "8x8"], "p", "width must be between 16 and 4096"),
    (["--size", "64x99999"], "p", "height must be between 16 and 4096"),
    (["--size", "big"], "p", "is not WIDTHxHEIGHT"),
    (["--steps", "0"], "p", "steps must be between 1 and 500"),
    (["--steps", "100000"], "p", "steps must be between 1 and 500"),
    (["--guidance", "-1"], "p", "guidance must be in [0"),
    (["--seed", "-5"], "p", "seed must be between 0"),
    (["--image", "{dir}/missing.png"], "p", "does not exist"),
    (["--image", "{dir}/notes.txt"], "p", "is not a readable picture"),
    (["--backend", "nope"], "p", "unknown backend 'nope'"),
    (["--backend", "ltx2"], "p", "kinema models pull Lightricks/LTX-2"),
    (["--backend", "ltx2", "--model", "{dir}"], "p", "has no model_index.json"),
    (["--backend", "ltx2", "--model", "no such thing"], "p", "neither a folder nor a model id"),
    (["--model", "a/b"], "p", "drop --model"),
    (["--style", "baroque"], "p", "unknown style 'baroque'"),
    (["-o", "{dir}/missing/clip.mp4"], "p", "does not exist; create it first"),
    (["-o", "{dir}/adir.mp4"], "p", "is a directory"),
    (["-o", "{dir}/clip.avi"], "p", "must end in .mp4"),
]


@pytest.mark.parametrize("extra, prompt, message", BAD_INPUTS)
def test_bad_input_is_one_clear_line_and_no_file(files, extra, prompt, message):
    before = sorted(p.name for p in files.iterdir())
    args = [a.replace("{dir}", str(files)) for a in extra]
    if "-o" not in args:
        args += ["-o", str(files / "clip.mp4")]
    result = CliRunner().invoke(cli, ["generate", prompt, *FAST, *args])
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert message in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output
    assert sorted(p.name for p in files.iterdir()) == before


def test_disk_full_leaves_no_file(tmp_path):
    """A real write failure (file size limit: EFBIG, like a full disk) mid-encode."""
    run("generate", "warm up the tiny model", "-o", str(tmp_path / "warm.mp4"), *FAST)  # builds the model first
    (tmp_path / "warm.mp4").unlink()
    out = tmp_path / "out"
    out.mkdir()

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    done = subprocess.run(
        [sys.executable, "-m", "kinema.cli", "generate", "noise", "-o", str(out / "clip.mp4"), *FAST],
        preexec_fn=limit,
        capture_output=True,
        text=True,
        env=os.environ,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr
    assert "Error: could not write" in done.stderr
    assert "Traceback" not in done.stderr
    assert list(out.iterdir()) == []


def test_debug_shows_the_traceback(files):
    result = CliRunner().invoke(cli, ["--debug", "generate", "p", "--backend", "nope", "-o", str(files / "c.mp4")])
    assert result.exception is not None and "unknown backend" in str(result.exception)


def test_backends_lists_every_backend_and_readiness():
    result = run("backends", "list", "--json")
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert {"tiny", "tiny-wan", "ltx2", "wan"} <= set(rows)
    assert rows["tiny"]["ready"] and not rows["ltx2"]["ready"]
    assert "kinema models pull" in rows["ltx2"]["detail"]


def test_doctor_reports_the_machine():
    result = run("doctor")
    assert result.exit_code == 0
    for words in ("python", "torch", "device: cpu", "codec libx264: available", "backend tiny", "model dir"):
        assert words in result.output


def test_styles_and_plugins_commands():
    assert "cinematic" in run("styles").output
    assert '"kinema.backends.tiny"' in run("plugins").output
