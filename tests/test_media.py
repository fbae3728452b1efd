"""Tests for kinema.media with real encoders/decoders (libx264, AAC, PNG, JPEG)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from fractions import Fraction

import numpy as np
import pytest

from kinema.media import files as media
from kinema.media.files import MediaReadError, MediaWriteError

AAC_FRAME = 1024


# --------------------------------------------------------------------------- helpers


def gradient_clip(t: int = 25, h: int = 32, w: int = 32) -> np.ndarray:
    """A smooth, slowly moving RGB gradient: compresses well, so PSNR is meaningful."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    frames = [
        np.stack([x * 255 / max(w - 1, 1), y * 255 / max(h - 1, 1), (x + y + 2 * i) * 2 + 40], axis=-1)
        for i in range(t)
    ]
    return np.clip(np.round(frames), 0, 255).astype(np.uint8)


def sine(channels: int, n: int, sample_rate: int) -> np.ndarray:
    t = np.arange(n) / sample_rate
    tones = [0.5 * np.sin(2 * np.pi * f * t) for f in (440, 660)[:channels]]
    return np.stack(tones).astype(np.float32)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def snr_db(ref: np.ndarray, test: np.ndarray) -> float:
    return 10 * np.log10(np.mean(ref**2) / np.mean((ref - test) ** 2))


def samples_for(frames: int, fps: Fraction, sample_rate: int) -> int:
    return round(Fraction(frames) / fps * sample_rate)


# --------------------------------------------------------------------------- round trips


def test_round_trip_stereo(tmp_path):
    frames = gradient_clip(25, 32, 32)
    sr = 24000
    n = samples_for(25, Fraction(24), sr)
    assert n == 25000  # exactly 25/24 s
    audio = sine(2, n, sr)
    meta = {"title": "a test", "comment": "hello", "kinema:seed": "42", "kinema:prompt": 'a cät, "quoted"\nline 2'}

    out = media.write_mp4(tmp_path / "clip.mp4", frames, 24, audio, sr, meta)

    assert out == tmp_path / "clip.mp4"
    assert sorted(os.listdir(tmp_path)) == ["clip.mp4"]  # no temp left behind

    info = media.probe(out)
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert (info.width, info.height, info.frame_count) == (32, 32, 25)
    assert info.fps == Fraction(24) and isinstance(info.fps, Fraction)
    assert info.video_duration == pytest.approx(25 / 24)
    assert info.has_audio and info.sample_rate == sr and info.audio_channels == 2
    assert abs(info.audio_duration - info.video_duration) <= AAC_FRAME / sr
    assert info.metadata == meta

    got, fps, got_audio, got_sr, got_meta = media.read_mp4(out)
    assert got.dtype == np.uint8 and got.shape == frames.shape
    assert fps == Fraction(24)
    assert psnr(got, frames) > 30
    assert got_sr == sr and got_audio.dtype == np.float32 and got_audio.shape[0] == 2
    assert abs(got_audio.shape[1] - n) <= AAC_FRAME
    # Trailing samples survive (encoder flushed) and the audio is not shifted.
    m = min(n, got_audio.shape[1])
    assert snr_db(audio[:, 200:m], got_audio[:, 200:m]) > 20
    assert got_meta == meta


def test_ntsc_fps_is_exact(tmp_path):
    fps = Fraction(30000, 1001)
    sr = 48000
    audio = sine(2, samples_for(30, fps, sr), sr)
    out = media.write_mp4(tmp_path / "ntsc.mp4", gradient_clip(30, 16, 16), fps, audio, sr)
    info = media.probe(out)
    assert info.fps == fps
    assert info.frame_count == 30
    assert info.video_duration == pytest.approx(30 * 1001 / 30000)
    assert abs(info.audio_duration - info.video_duration) <= AAC_FRAME / sr
    assert media.read_mp4(out)[1] == fps


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        (29.97, Fraction(30000, 1001)),
        (23.976, Fraction(24000, 1001)),
        (25.0, Fraction(25)),
        (12.5, Fraction(25, 2)),
        (np.int64(8), Fraction(8)),
    ],
)
def test_fps_numbers_are_stored_exactly(tmp_path, given, stored):
    out = media.write_mp4(tmp_path / "f.mp4", gradient_clip(3, 16, 16), given)
    assert media.probe(out).fps == stored


def test_mono_audio(tmp_path):
    sr = 48000
    n = samples_for(12, Fraction(24), sr)
    audio = sine(1, n, sr)
    out = media.write_mp4(tmp_path / "mono.mp4", gradient_clip(12, 16, 16), 24, audio, sr)
    info = media.probe(out)
    assert info.audio_channels == 1 and info.sample_rate == sr
    _, _, got, got_sr, _ = media.read_mp4(out)
    assert got.shape[0] == 1 and abs(got.shape[1] - n) <= AAC_FRAME
    m = min(n, got.shape[1])
    assert snr_db(audio[:, 200:m], got[:, 200:m]) > 20


def test_audio_duration_not_a_whole_number_of_samples(tmp_path):
    # 25/24 s at 44.1 kHz is 45937.5 samples; the caller rounds.
    sr = 44100
    n = samples_for(25, Fraction(24), sr)
    out = media.write_mp4(tmp_path / "a.mp4", gradient_clip(25, 16, 16), 24, sine(2, n, sr), sr)
    info = media.probe(out)
    assert abs(info.audio_duration - info.video_duration) <= AAC_FRAME / sr
    assert abs(media.read_mp4(out)[2].shape[1] - n) <= AAC_FRAME


def test_no_audio(tmp_path):
    out = media.write_mp4(tmp_path / "silent.mp4", gradient_clip(5, 16, 16), 24)
    info = media.probe(out)
    assert not info.has_audio
    assert info.sample_rate is info.audio_channels is info.audio_duration is info.audio_codec is None
    frames, fps, audio, sr, meta = media.read_mp4(out)
    assert frames.shape == (5, 16, 16, 3) and fps == 24
    assert audio is None and sr is None and meta == {}


def test_single_frame(tmp_path):
    out = media.write_mp4(tmp_path / "one.mp4", gradient_clip(1, 16, 16), 24)
    assert media.probe(out).frame_count == 1
    assert media.read_mp4(out)[0].shape == (1, 16, 16, 3)


def test_odd_size_is_padded_by_edge_replication(tmp_path):
    frames = gradient_clip(4, 15, 21)
    out = media.write_mp4(tmp_path / "odd.mp4", frames, 24, crf=0)
    info = media.probe(out)
    assert (info.height, info.width) == (16, 22)
    got = media.read_mp4(out)[0]
    assert psnr(got[:, :15, :21], frames) > 30
    # The extra row/column repeats the last one.
    assert psnr(got[:, 15, :21], frames[:, 14]) > 30
    assert psnr(got[:, :15, 21], frames[:, :, 20]) > 30


def test_overwrites_existing_file_and_respects_umask(tmp_path):
    dest = tmp_path / "clip.mp4"
    dest.write_bytes(b"old")
    old_umask = os.umask(0o022)
    try:
        media.write_mp4(dest, gradient_clip(3, 16, 16), 24)
    finally:
        os.umask(old_umask)
    assert media.probe(dest).frame_count == 3
    assert os.stat(dest).st_mode & 0o777 == 0o644  # not mkstemp's 0600
    assert os.listdir(tmp_path) == ["clip.mp4"]


def test_accepts_str_path_in_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = media.write_mp4("rel.mp4", gradient_clip(2, 16, 16), 24)
    assert out.name == "rel.mp4" and media.probe(tmp_path / "rel.mp4").frame_count == 2


# --------------------------------------------------------------------------- atomicity

# Runs a write under a real file-size limit: with SIGXFSZ ignored, write(2)
# fails with EFBIG once the file would exceed 20000 bytes, like a full disk.
_EFBIG_SCRIPT = textwrap.dedent(
    """
    import json, resource, signal, sys
    import numpy as np
    from kinema.media import files as media

    resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    noise = np.random.default_rng(0).integers(0, 256, (10, 128, 128, 3), dtype=np.uint8)
    try:
        media.write_mp4(sys.argv[1], noise, 24, crf=0)
    except media.MediaWriteError as exc:
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
    else:
        print(json.dumps({"error": None}))
    """
)

_INTERRUPT_SCRIPT = textwrap.dedent(
    """
    import signal, sys
    import numpy as np
    from kinema.media import files as media

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    noise = np.random.default_rng(0).integers(0, 256, (1500, 128, 128, 3), dtype=np.uint8)
    signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.1)  # Ctrl-C in the middle of encoding
    try:
        media.write_mp4(sys.argv[1], noise, 24, crf=0)
    except KeyboardInterrupt:
        print("interrupted")
    else:
        print("finished")
    """
)


def _run_script(script: str, dest) -> str:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.run(
        [sys.executable, "-c", script, str(dest)], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def test_disk_full_leaves_nothing_behind(tmp_path):
    result = json.loads(_run_script(_EFBIG_SCRIPT, tmp_path / "clip.mp4"))
    assert result["error"] == "MediaWriteError"
    assert "clip.mp4" in result["message"] and "File too large" in result["message"]
    assert "-o" in result["message"]  # tells the user what to do
    assert os.listdir(tmp_path) == []


def test_disk_full_keeps_existing_destination(tmp_path):
    dest = tmp_path / "clip.mp4"
    dest.write_bytes(b"previous good clip")
    result = json.loads(_run_script(_EFBIG_SCRIPT, dest))
    assert result["error"] == "MediaWriteError"
    assert dest.read_bytes() == b"previous good clip"
    assert os.listdir(tmp_path) == ["clip.mp4"]


def test_keyboard_interrupt_leaves_nothing_behind(tmp_path):
    assert _run_script(_INTERRUPT_SCRIPT, tmp_path / "clip.mp4") == "interrupted"
    assert os.listdir(tmp_path) == []


def test_unwritable_directory(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(MediaWriteError, match="Permission denied"):
        media.write_mp4(locked / "clip.mp4", gradient_clip(2, 16, 16), 24)


# --------------------------------------------------------------------------- validation

GOOD = {"frames": gradient_clip(2, 16, 16), "fps": 24, "audio": None, "sample_rate": None, "metadata": None}
STEREO = sine(2, 2000, 24000)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"frames": gradient_clip(2, 16, 16).astype(np.float32)}, "uint8.*float32"),
        ({"frames": np.zeros((2, 16, 16), np.uint8)}, r"\[T, H, W, 3\].*\(2, 16, 16\)"),
        ({"frames": np.zeros((2, 16, 16, 4), np.uint8)}, r"\(2, 16, 16, 4\)"),
        ({"frames": np.zeros((0, 16, 16, 3), np.uint8)}, "at least 1 frame"),
        ({"frames": np.zeros((1, 0, 16, 3), np.uint8)}, "at least 1x1"),
        ({"fps": 0}, "fps must be a positive number.*0"),
        ({"fps": -24}, "-24"),
        ({"fps": float("nan")}, "nan"),
        ({"fps": "24"}, "'24'"),
        ({"fps": True}, "True"),
        ({"audio": STEREO[0], "sample_rate": 24000}, r"\[C, N\].*\(2000,\)"),
        ({"audio": np.zeros((3, 100), np.float32), "sample_rate": 24000}, r"\(3, 100\)"),
        ({"audio": np.zeros((2, 0), np.float32), "sample_rate": 24000}, r"\(2, 0\)"),
        ({"audio": STEREO.astype(np.float64), "sample_rate": 24000}, "float32.*float64"),
        ({"audio": [[0.0, 0.1]], "sample_rate": 24000}, "numpy float32 array.*list"),
        ({"audio": np.full((1, 10), np.nan, np.float32), "sample_rate": 24000}, "NaN"),
        ({"audio": STEREO}, "sample_rate is required"),
        ({"audio": STEREO, "sample_rate": 0}, "positive integer.*0"),
        ({"audio": STEREO, "sample_rate": 24000.0}, "24000.0"),
        ({"audio": STEREO, "sample_rate": 12345}, "12345 is not supported by AAC"),
        ({"metadata": {"seed": 42}}, "str to str.*42"),
        ({"metadata": {"": "x"}}, "non-empty"),
        ({"metadata": {"a": "b\0c"}}, "NUL"),
        ({"metadata": {"encoder": "me"}}, "'encoder' is reserved"),
        ({"metadata": [("a", "b")]}, "dict.*list"),
        ({"crf": 52}, "crf.*52"),
        ({"crf": 18.5}, "crf.*18.5"),
    ],
)
def test_write_validation(tmp_path, overrides, message):
    args = {**GOOD, **overrides}
    crf = args.pop("crf", 18)
    with pytest.raises(MediaWriteError, match=message):
        media.write_mp4(tmp_path / "x.mp4", crf=crf, **args)
    assert os.listdir(tmp_path) == []


def test_missing_directory(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(MediaWriteError, match=f"directory {missing} does not exist — create it first"):
        media.write_mp4(missing / "clip.mp4", GOOD["frames"], 24)
    assert os.listdir(tmp_path) == []


def test_destination_is_a_directory(tmp_path):
    with pytest.raises(MediaWriteError, match="is a directory"):
        media.write_mp4(tmp_path, GOOD["frames"], 24)


def test_parent_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(MediaWriteError, match="is not a directory"):
        media.write_mp4(tmp_path / "file" / "clip.mp4", GOOD["frames"], 24)


def test_out_of_range_audio_is_clipped_not_rejected(tmp_path):
    loud = np.full((1, 2000), 3.0, np.float32)
    out = media.write_mp4(tmp_path / "loud.mp4", gradient_clip(2, 16, 16), 24, loud, 24000)
    assert media.probe(out).has_audio


# --------------------------------------------------------------------------- read errors


@pytest.fixture(scope="module")
def good_mp4(tmp_path_factory):
    path = tmp_path_factory.mktemp("good") / "good.mp4"
    sr = 24000
    audio = sine(2, samples_for(25, Fraction(24), sr), sr)
    return media.write_mp4(path, gradient_clip(25, 32, 32), 24, audio, sr)


@pytest.mark.parametrize("keep", [0.005, 0.5, 0.98], ids=["header", "half", "tail"])
def test_truncated_mp4(tmp_path, good_mp4, keep):
    data = good_mp4.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(MediaReadError, match="cannot read .*cut.mp4"):
        media.read_mp4(cut)


@pytest.mark.parametrize("func", [media.read_mp4, media.probe])
def test_not_a_video(tmp_path, func):
    text = tmp_path / "notes.mp4"
    text.write_text("just some text, not a video\n" * 20)
    with pytest.raises(MediaReadError, match="cannot read .*notes.mp4.*is it a video file"):
        func(text)


@pytest.mark.parametrize("func", [media.read_mp4, media.probe])
def test_missing_video(tmp_path, func):
    with pytest.raises(MediaReadError, match="does not exist"):
        func(tmp_path / "missing.mp4")


# --------------------------------------------------------------------------- images


def _pil():
    return pytest.importorskip("PIL.Image")


def test_png_round_trip(tmp_path):
    frame = gradient_clip(1, 20, 30)[0]
    data = media.encode_png(frame)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    (tmp_path / "f.png").write_bytes(data)
    assert np.array_equal(media.read_image(tmp_path / "f.png"), frame)


def test_jpeg_round_trip_and_quality(tmp_path):
    frame = gradient_clip(1, 64, 64)[0]
    low, high = media.encode_jpeg(frame, quality=20), media.encode_jpeg(frame, quality=95)
    assert low.startswith(b"\xff\xd8") and high.startswith(b"\xff\xd8")
    assert len(low) < len(high)
    (tmp_path / "f.jpg").write_bytes(high)
    got = media.read_image(tmp_path / "f.jpg")
    assert got.shape == (64, 64, 3) and psnr(got, frame) > 30


def test_webp_grey_and_rgba(tmp_path):
    image = _pil()
    frame = gradient_clip(1, 16, 16)[0]
    image.fromarray(frame).save(tmp_path / "f.webp", lossless=True)
    assert np.array_equal(media.read_image(tmp_path / "f.webp"), frame)

    grey = np.arange(256, dtype=np.uint8).reshape(16, 16)
    image.fromarray(grey, mode="L").save(tmp_path / "g.png")
    got = media.read_image(tmp_path / "g.png")
    assert got.shape == (16, 16, 3) and np.array_equal(got[..., 1], grey)

    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = [255, 0, 0, 255]  # opaque red stays red
    rgba[0, 1] = [0, 0, 0, 0]  # fully transparent -> white background
    rgba[1, :] = [0, 0, 0, 128]  # half-transparent black -> mid grey
    image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    got = media.read_image(tmp_path / "a.png")
    assert got[0, 0].tolist() == [255, 0, 0]
    assert got[0, 1].tolist() == [255, 255, 255]
    assert abs(int(got[1, 0, 0]) - 127) <= 1


def test_without_pillow_uses_ffmpeg(tmp_path, monkeypatch):
    monkeypatch.setattr(media, "_pillow", lambda: None)
    frame = gradient_clip(1, 20, 30)[0]
    png, jpeg = media.encode_png(frame), media.encode_jpeg(frame, quality=90)
    assert png.startswith(b"\x89PNG") and jpeg.startswith(b"\xff\xd8")
    (tmp_path / "f.png").write_bytes(png)
    (tmp_path / "f.jpg").write_bytes(jpeg)
    assert np.array_equal(media.read_image(tmp_path / "f.png"), frame)
    assert psnr(media.read_image(tmp_path / "f.jpg"), frame) > 30
    (tmp_path / "t.png").write_text("not an image")
    with pytest.raises(MediaReadError, match="t.png"):
        media.read_image(tmp_path / "t.png")


def test_read_image_errors(tmp_path):
    (tmp_path / "notes.png").write_text("hello, I am text")
    with pytest.raises(MediaReadError, match="cannot read image .*notes.png"):
        media.read_image(tmp_path / "notes.png")
    with pytest.raises(MediaReadError, match="missing.png.*does not exist"):
        media.read_image(tmp_path / "missing.png")
    with pytest.raises(MediaReadError, match="directory"):
        media.read_image(tmp_path)
    truncated = media.encode_png(gradient_clip(1, 64, 64)[0])[:200]
    (tmp_path / "cut.png").write_bytes(truncated)
    with pytest.raises(MediaReadError, match="cut.png"):
        media.read_image(tmp_path / "cut.png")


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 3))])
def test_encode_image_validation(bad):
    with pytest.raises(MediaWriteError, match="image must"):
        media.encode_png(bad)
    with pytest.raises(MediaWriteError, match="image must"):
        media.encode_jpeg(bad)


@pytest.mark.parametrize("quality", [0, 101, 50.5])
def test_jpeg_quality_validation(quality):
    with pytest.raises(MediaWriteError, match="quality"):
        media.encode_jpeg(np.zeros((4, 4, 3), np.uint8), quality=quality)


def test_media_errors_share_a_base():
    assert issubclass(MediaWriteError, media.MediaError) and issubclass(MediaReadError, media.MediaError)
    assert not issubclass(media.MediaError, OSError)
