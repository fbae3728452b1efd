"""Cameos end to end with a real face: capture, consent, insertion into the tiny LTX-2 and Wan VACE, identity scores.

The face is scikit-image's public-domain astronaut photo (Eileen Collins, NASA),
filmed by a moving, zooming crop; the voice is a synthesised voiced signal
(harmonics under a syllable-rate envelope). Everything is built here, offline.
"""

import importlib
import json
import os
import shutil
import stat
import time
import warnings
from fractions import Fraction

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
skimage_data = pytest.importorskip("skimage.data")

from cameo_helpers import VERIFIED, mark_verified  # noqa: E402

import kinema  # noqa: E402
from kinema import GenerationRequest, InvalidRequestError  # noqa: E402
from kinema.cameo import store as cameo_lib  # noqa: E402
from kinema.cameo.capture import CaptureError, capture  # noqa: E402
from kinema.cameo.store import CameoNotAllowedError, CameoStore, CameoTamperedError  # noqa: E402
from kinema.media import speech  # noqa: E402
from kinema.media.files import write_mp4  # noqa: E402

if os.environ.get("KINEMA_COMFYUI_DIR"):
    from test_comfyui_integration import comfy  # noqa: E402,F401  (the real-ComfyUI fixture)

SMALL = dict(width=32, height=32, seconds=0.375, fps=24, steps=2, seed=1)
API_SMALL = dict(size="32x32", seconds="0.375", fps=24, steps=2, seed=1)  # the same, as the server takes it
RATE = 24000


def synth_voice(seconds: float, rate: int = RATE, seed: int = 0) -> np.ndarray:
    """A voiced, speech-like signal: 15 harmonics of a gliding ~130 Hz pitch, ~5 syllables a second."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    pitch = 130 + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 16))
    syllables = np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None) ** 0.6
    signal = 0.3 * voiced * syllables / np.abs(voiced).max() + 0.002 * rng.standard_normal(t.size)
    return signal.astype(np.float32)


def moving_crop(image: np.ndarray, frames: int = 20, out: int = 256, center=(224, 150)) -> np.ndarray:
    """A slow pan and zoom over ``image``: the face moves and changes size like in a hand-held recording."""
    shots = []
    for i in range(frames):
        u = i / (frames - 1)
        side = int(300 + 60 * u)
        cx, cy = center[0] + 20 * np.sin(2 * np.pi * u), center[1] + 10 * np.cos(2 * np.pi * u)
        x0 = int(np.clip(cx - side / 2, 0, image.shape[1] - side))
        y0 = int(np.clip(cy - side / 2, 0, image.shape[0] - side))
        shots.append(cv2.resize(image[y0 : y0 + side, x0 : x0 + side], (out, out), interpolation=cv2.INTER_AREA))
    return np.stack(shots)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    return make_media(tmp_path_factory.mktemp("cameo-media"))


def make_media(root):
    """The recordings the cameo tests capture from, written into ``root``."""
    astronaut = skimage_data.astronaut()
    fps = Fraction(10)
    files = {
        "person": write_mp4(root / "person.mp4", moving_crop(astronaut), fps, synth_voice(2.0)[None], RATE),
        "two": write_mp4(
            root / "two.mp4",
            np.concatenate([moving_crop(astronaut), moving_crop(astronaut[:, ::-1].copy(), center=(288, 150))], axis=2),
            fps,
        ),
        "noface": write_mp4(root / "noface.mp4", moving_crop(skimage_data.coffee(), center=(300, 200)), fps),
        "short": write_mp4(root / "short.mp4", moving_crop(astronaut)[:5], fps),
        "voice": speech.write_wav(root / "voice.wav", synth_voice(4.0, seed=1), RATE),
        "silent": speech.write_wav(root / "silent.wav", np.zeros(4 * RATE, np.float32), RATE),
        "broken": root / "broken.mp4",
    }
    files["broken"].write_bytes(b"this is not a video")
    return files


@pytest.fixture(scope="module")
def captured(media):
    return capture_person(media)


def capture_person(media):
    from kinema.cameo.face import HaarDetector

    # Module-scoped, so it runs before the per-test KINEMA_HOME exists: name the detector rather than look one up.
    return capture(media["person"], media["voice"], detector=HaarDetector(), embedder=None)


@pytest.fixture
def store():
    return CameoStore()


@pytest.fixture
def astro(store, captured):
    return store.create("astro", "alice", captured, verification=VERIFIED)


# ---------------------------------------------------------------------------------- capture


def test_capture_finds_the_face_and_keeps_the_voice(captured):
    report = captured.report
    assert report["frames_with_face"] == report["frames_sampled"] == 20
    assert report["face_px"] >= 64
    assert len(captured.references) == 4 and len(captured.faces) == 4
    assert all(r.shape == (512, 512, 3) and r.dtype == np.uint8 for r in captured.references)
    assert all(f.shape == (112, 112, 3) for f in captured.faces)
    # Different moments, not four copies of the best frame.
    assert len(set(report["reference_times"])) == 4
    # The portrait is centred on the face at a useful size.
    from kinema.cameo.face import HaarDetector

    faces = HaarDetector().detect(captured.references[0])
    assert len(faces) == 1
    (cx, cy), size = faces[0].center, faces[0].size
    assert abs(cx - 256) < 40 and 130 < cy < 260 and 150 < size < 300
    # The voice: the speech of the 4 s recording, loudness-normalised.
    assert captured.voice is not None and captured.voice_rate == RATE
    assert captured.voice.shape[0] / RATE >= speech.MIN_SPEECH_SECONDS
    assert abs(speech.integrated_loudness(captured.voice, RATE) - speech.TARGET_LUFS) < 0.5


def test_the_videos_own_speech_is_used_when_no_voice_file_is_given(media):
    result = capture(media["person"], embedder=None)
    # Its 2 s track has under 3 s of speech: no voice, but still a cameo, and a note that says why.
    assert result.voice is None and result.references
    assert any("at least 3 s" in note for note in result.notes)


@pytest.mark.parametrize(
    "video, audio, reason",
    [
        ("noface", None, "no_face"),
        ("two", None, "several_people"),
        ("person", "silent", "no_speech"),
        ("short", None, "too_short"),
        ("broken", None, "unreadable"),
    ],
)
def test_capture_refuses_with_the_reason(media, video, audio, reason):
    with pytest.raises(CaptureError) as refused:
        capture(media[video], media[audio] if audio else None, embedder=None)
    assert refused.value.reason == reason
    assert media[audio or video].name in str(refused.value) or reason == "unreadable"


def test_speech_detection_and_loudness():
    t = np.arange(5 * RATE) / RATE
    assert speech.find_speech(synth_voice(5.0), RATE).speech_seconds > 4.5
    assert speech.find_speech(np.zeros(5 * RATE, np.float32), RATE).speech_seconds == 0
    hum = (0.3 * np.sin(2 * np.pi * 100 * t)).astype(np.float32)
    hiss = (0.1 * np.random.default_rng(0).standard_normal(t.size)).astype(np.float32)
    assert speech.find_speech(hum, RATE).speech_seconds == 0
    assert speech.find_speech(hiss, RATE).speech_seconds == 0
    # BS.1770's reference point: a full-scale 997 Hz sine at 48 kHz reads -3.01 LUFS.
    t48 = np.arange(5 * 48000) / 48000
    assert speech.integrated_loudness(np.sin(2 * np.pi * 997 * t48), 48000) == pytest.approx(-3.01, abs=0.01)


# ---------------------------------------------------------------------------------- consent


STATES = {
    "only_me": dict(permission="only_me"),
    "listed": dict(permission="listed", add_users=("bob",)),
    "everyone": dict(permission="everyone"),
    "revoked": dict(permission="everyone"),
    "expired": dict(permission="everyone", expires=time.time() - 1),
}
ALLOWED = {  # (state, user) -> may use
    ("only_me", "alice"): True,
    ("only_me", "bob"): False,
    ("only_me", "eve"): False,
    ("listed", "alice"): True,
    ("listed", "bob"): True,
    ("listed", "eve"): False,
    ("everyone", "alice"): True,
    ("everyone", "bob"): True,
    ("everyone", "eve"): True,
    ("revoked", "alice"): False,
    ("revoked", "bob"): False,
    ("revoked", "eve"): False,
    ("expired", "alice"): False,
    ("expired", "bob"): False,
    ("expired", "eve"): False,
}


@pytest.mark.parametrize("state", list(STATES))
def test_consent_matrix(store, astro, state):
    store.allow("astro", "alice", **STATES[state])
    if state == "revoked":
        store.revoke("astro", "alice")
    for user in ("alice", "bob", "eve"):  # owner, listed, anyone else
        # What the engine runs when a generation starts (and the server when a job is submitted).
        request = GenerationRequest("astro surfing at dawn", cameos=("astro",), user=user, backend="tiny-ltx2", **SMALL)
        if ALLOWED[(state, user)]:
            assert [c.name for c in cameo_lib.prepare(request).cameos] == ["astro"]
        else:
            with pytest.raises(CameoNotAllowedError) as refused:
                cameo_lib.prepare(request)
            assert refused.value.reason == {"revoked": "revoked", "expired": "expired"}.get(state, "not_allowed")


def test_the_engine_refuses_before_any_step_and_runs_when_allowed(store, astro):
    steps = []
    with pytest.raises(CameoNotAllowedError, match="'bob' may not use cameo 'astro'"):
        kinema.generate(
            GenerationRequest("x", cameos=("astro",), user="bob", backend="tiny-ltx2", **SMALL), progress=steps.append
        )
    assert steps == []
    store.allow("astro", "alice", add_users=("bob",))
    clip = kinema.generate(
        GenerationRequest("x", cameos=("astro",), user="bob", backend="tiny-ltx2", **SMALL), progress=steps.append
    )
    assert clip.metadata["cameos"] == ["astro"] and len(steps) == SMALL["steps"]


def test_only_the_owner_manages_a_cameo(store, astro):
    for action in (
        lambda: store.allow("astro", "bob", permission="everyone"),
        lambda: store.revoke("astro", "bob"),
        lambda: store.uses("astro", "bob"),
        lambda: store.delete("astro", "bob"),
    ):
        with pytest.raises(CameoNotAllowedError) as refused:
            action()
        assert refused.value.reason == "not_owner"
    assert store.get("astro").permission == "only_me"


def test_allowing_again_lifts_a_revoke_and_revoking_a_user_removes_them(store, astro):
    store.allow("astro", "alice", add_users=("bob", "carol"))
    store.revoke("astro", "alice", users=("carol",))
    assert store.get("astro").allowed_users == ("bob",)
    store.revoke("astro", "alice")
    with pytest.raises(CameoNotAllowedError):
        store.authorize("astro", "bob")
    store.allow("astro", "alice")
    assert store.authorize("astro", "bob").name == "astro"


def test_a_hand_edited_record_is_refused(store, astro):
    record_file = astro.directory / cameo_lib.RECORD_FILE
    body = json.loads(record_file.read_text())
    body["record"]["permission"] = "everyone"
    record_file.write_text(json.dumps(body))
    with pytest.raises(CameoTamperedError, match="signature"):
        store.authorize("astro", "eve")
    with pytest.raises(CameoTamperedError):
        kinema.generate(GenerationRequest("x", cameos=("astro",), user="alice", backend="tiny-ltx2", **SMALL))


def test_a_swapped_picture_is_refused(store, astro):
    (astro.directory / astro.references[0]).write_bytes((astro.directory / astro.references[1]).read_bytes())
    with pytest.raises(CameoTamperedError, match="changed since capture"):
        store.authorize("astro", "alice")


def test_files_are_private_and_delete_removes_them_all(store, astro):
    assert stat.S_IMODE(os.stat(astro.directory).st_mode) == 0o700
    for path in astro.directory.iterdir():
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path.name
    assert {p.name for p in astro.directory.iterdir()} >= {"cameo.json", "voice.wav", "reference-0.png", "face-0.png"}
    store.delete("astro", "alice")
    assert not astro.directory.exists()
    assert [p for p in store.root.iterdir() if "astro" in p.name] == []
    with pytest.raises(cameo_lib.CameoNotFoundError):
        store.get("astro")


def test_revoking_during_generation_withholds_the_clip(store, astro):
    def revoke_midway(event):
        if event.step == 1:
            store.revoke("astro", "alice")

    with pytest.raises(CameoNotAllowedError, match="revoked"):
        kinema.generate(
            GenerationRequest("x", cameos=("astro",), user="alice", backend="tiny-ltx2", **SMALL),
            progress=revoke_midway,
        )
    assert store.uses("astro", "alice") == []


def test_the_owner_sees_every_clip_made_with_it(store, astro, tmp_path):
    store.allow("astro", "alice", add_users=("bob",))
    clip = kinema.generate(
        GenerationRequest("astro on the moon", cameos=("astro",), user="bob", backend="tiny-ltx2", **SMALL)
    )
    path = clip.save(tmp_path / "moon.mp4")
    uses = store.uses("astro", "alice")
    assert len(uses) == 1
    assert uses[0]["user"] == "bob" and uses[0]["prompt"] == "astro on the moon"
    assert uses[0]["saved_to"] == [str(path.resolve())]
    assert kinema.Clip.load(path).metadata["cameos"] == ["astro"]


def _log_three_uses(store):
    for i in range(3):
        store.log_use("astro", {"use": f"u{i}", "at": i, "user": "bob", "prompt": f"take {i}"})


def _edit_prompt(log):
    log.write_text(log.read_text().replace("take 1", "something else"))


def _drop_middle(log):
    lines = log.read_text().splitlines(keepends=True)
    log.write_text(lines[0] + lines[2])


def _swap(log):
    lines = log.read_text().splitlines(keepends=True)
    log.write_text(lines[1] + lines[0] + lines[2])


def _cut_last(log):
    log.write_text("".join(log.read_text().splitlines(keepends=True)[:2]))


def _unsigned_line(log):
    log.write_text(log.read_text() + json.dumps({"use": "u9", "user": "eve", "prompt": "added"}) + "\n")


@pytest.mark.parametrize(
    "tamper, why",
    [
        (_edit_prompt, "line 2 does not match"),
        (_drop_middle, "line 2 does not match"),
        (_swap, "line 1 does not match"),
        (_cut_last, "it holds 2 lines where 3 were written"),
        (_unsigned_line, "line 4 does not match"),
        (lambda log: log.unlink(), "it holds 0 lines where 3 were written"),
        (lambda log: (log.parent / cameo_lib.USES_HEAD_FILE).unlink(), "uses.head is missing"),
    ],
)
def test_an_edited_use_log_refuses_the_cameo_and_its_owner_can_delete_it(store, astro, tamper, why):
    _log_three_uses(store)
    assert [u["prompt"] for u in store.uses("astro", "alice")] == ["take 0", "take 1", "take 2"]
    tamper(astro.directory / cameo_lib.USES_FILE)
    for refused in (
        lambda: store.uses("astro", "alice"),
        lambda: store.authorize("astro", "alice"),
        lambda: store.log_use("astro", {"use": "u3"}),
        lambda: cameo_lib.prepare(
            GenerationRequest("x", cameos=("astro",), user="alice", backend="tiny-ltx2", **SMALL)
        ),
    ):
        with pytest.raises(CameoTamperedError, match=f"use log \\(uses.jsonl\\) was changed outside kinema \\({why}"):
            refused()
    with pytest.raises(CameoNotAllowedError):
        store.delete("astro", "bob")
    store.delete("astro", "alice")
    assert not astro.directory.exists()


def test_a_line_torn_by_a_crash_is_dropped_and_the_log_goes_on(store, astro):
    _log_three_uses(store)
    log = astro.directory / cameo_lib.USES_FILE
    with open(log, "ab") as handle:
        handle.write(b'{"entry": {"use": "u3", "us')  # killed mid-write: no newline
    assert len(store.uses("astro", "alice")) == 3
    store.log_use("astro", {"use": "u4", "at": 4, "user": "bob", "prompt": "after the crash"})
    assert [u["prompt"] for u in store.uses("astro", "alice")][-1] == "after the crash"
    assert len(log.read_text().splitlines()) == 4


def test_a_plain_use_log_from_before_chaining_is_signed_once_then_guarded(store, astro):
    directory = astro.directory
    record = json.loads((directory / cameo_lib.RECORD_FILE).read_text())["record"]
    del record[cameo_lib.USE_LOG_CHAINED]
    store._write_record(directory, record)  # a cameo as an older kinema left it
    (directory / cameo_lib.USES_HEAD_FILE).unlink()
    old = [{"use": "u0", "at": 1, "user": "bob", "prompt": "old"}, {"use": "u0", "saved_to": "/clips/a.mp4", "at": 2}]
    (directory / cameo_lib.USES_FILE).write_text("".join(json.dumps(e) + "\n" for e in old))
    assert [(u["prompt"], u["saved_to"]) for u in store.uses("astro", "alice")] == [("old", ["/clips/a.mp4"])]
    _edit_prompt_old = (directory / cameo_lib.USES_FILE).read_text().replace('"old"', '"new"')
    (directory / cameo_lib.USES_FILE).write_text(_edit_prompt_old)
    with pytest.raises(CameoTamperedError, match="line 1 does not match"):
        store.uses("astro", "alice")


def test_a_tampered_record_is_deletable_by_its_owner_and_the_data_owner_only(store, astro, captured, monkeypatch):
    from click.testing import CliRunner

    from kinema.cli import cli

    record_file = astro.directory / cameo_lib.RECORD_FILE
    body = json.loads(record_file.read_text())
    body["record"]["permission"] = "everyone"
    record_file.write_text(json.dumps(body))
    with pytest.raises(CameoTamperedError, match="its owner can delete it \\(`kinema cameo delete astro`\\)"):
        store.get("astro")
    with pytest.raises(CameoTamperedError):
        store.delete("astro", "bob")  # not the owner the record names
    store.delete("astro", "alice")
    assert not astro.directory.exists()

    store.create("astro", "alice", captured)
    record_file.write_text(record_file.read_text().replace('"only_me"', '"everyone"'))
    monkeypatch.delenv("KINEMA_USER", raising=False)  # the CLI acts as the data directory's owner
    deleted = CliRunner().invoke(cli, ["cameo", "delete", "astro", "--yes"])
    assert deleted.exit_code == 0, deleted.output
    assert not astro.directory.exists()


# ---------------------------------------------------------------------------------- insertion


def test_wan_vace_receives_the_reference_pictures(astro, monkeypatch):
    from diffusers import WanVACEPipeline

    seen = {}
    original = WanVACEPipeline.__call__

    def spy(self, *args, **kwargs):
        seen.update(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(WanVACEPipeline, "__call__", spy)
    clip = kinema.generate(
        GenerationRequest("astro surfing", backend="tiny-wan-vace", cameos=("astro",), user="alice", **SMALL)
    )
    references = seen["reference_images"]
    assert len(references) == 1
    assert np.array_equal(np.asarray(references[0]), astro.reference_images()[0])
    assert clip.frames.shape == (9, 32, 32, 3) and clip.audio is not None
    assert clip.metadata["cameos"] == ["astro"] and clip.metadata["backend"] == "tiny-wan-vace"


def test_ltx2_receives_the_portrait_and_follows_the_speech(astro, monkeypatch):
    from diffusers import LTX2ImageToVideoPipeline

    seen = {}
    original = LTX2ImageToVideoPipeline.__call__

    def spy(self, *args, **kwargs):
        seen.update(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LTX2ImageToVideoPipeline, "__call__", spy)
    transformer = kinema.get_backend("tiny-ltx2").pipeline().transformer
    heard = []
    handle = transformer.register_forward_hook(
        lambda module, args, kwargs, out: heard.append(
            (kwargs["audio_hidden_states"].clone(), kwargs["audio_timestep"].clone())
        ),
        with_kwargs=True,
    )
    try:
        clip = kinema.generate(
            GenerationRequest(
                "astro says hello", cameos=("astro",), speech="astro", user="alice", backend="tiny-ltx2", **SMALL
            )
        )
        plain = []
        handle.remove()
        handle = transformer.register_forward_hook(
            lambda module, args, kwargs, out: plain.append(kwargs["audio_hidden_states"].clone()), with_kwargs=True
        )
        kinema.generate(GenerationRequest("astro says hello", backend="tiny-ltx2", **SMALL))
    finally:
        handle.remove()

    assert np.array_equal(np.asarray(seen["image"]), astro.reference_images()[0])
    # Every transformer call heard the same clean speech at noise level 0 ...
    assert len(heard) == SMALL["steps"]
    assert all(float(t.abs().max()) == 0.0 for _, t in heard)
    assert all(np.array_equal(a.numpy(), heard[0][0].numpy()) for a, _ in heard)
    # ... which is the cameo's voice, not the noise a plain generation starts from.
    assert not np.allclose(heard[0][0].numpy(), plain[0].numpy())
    # The clip's sound is the recording itself.
    voice, rate = speech.read_wav(astro.voice_path)
    expected = speech.resample(voice, rate, clip.sample_rate)[: clip.audio.shape[1]]
    assert np.corrcoef(clip.audio[0, : expected.shape[0]], expected)[0, 1] > 0.99
    assert clip.metadata["speech"] == "cameo:astro"


def test_a_speech_file_drives_the_clip(media):
    clip = kinema.generate(GenerationRequest("someone talks", speech=str(media["voice"]), backend="tiny-ltx2", **SMALL))
    assert clip.metadata["speech"] == "voice.wav"
    assert np.abs(clip.audio).max() > 0.05


@pytest.mark.parametrize(
    "backend, fields, message",
    [
        ("tiny-wan", dict(cameos=("astro",)), "cannot put 1 cameo"),
        ("tiny-ltx2", dict(cameos=("astro", "other")), "at most 1"),
        ("tiny-wan-vace", dict(speech="astro", cameos=("astro",)), "cannot follow a speech line"),
    ],
)
def test_backends_that_cannot_use_a_cameo_say_so(astro, backend, fields, message):
    with pytest.raises(InvalidRequestError, match=message):
        kinema.generate(GenerationRequest("x", backend=backend, user="alice", **fields, **SMALL))


def test_request_validation():
    with pytest.raises(InvalidRequestError, match="cameo name"):
        GenerationRequest("x", cameos=("Not A Name",))
    with pytest.raises(InvalidRequestError, match="list the cameo too"):
        GenerationRequest("x", speech="astro")
    assert GenerationRequest("x", cameos="astro").cameos == ("astro",)


# ---------------------------------------------------------------------------------- identity (onnxruntime)


@pytest.fixture
def embedder_model(tmp_path, monkeypatch):
    """A small face-embedding network exported to ONNX here: real onnxruntime inference, toy weights."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")

    class Embedder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = torch.nn.Conv2d(3, 16, 5, stride=4)
            self.pool = torch.nn.AvgPool2d(9)
            self.fc = torch.nn.Linear(144, 64)

        def forward(self, x):
            x = (x - x.mean(dim=(1, 2, 3), keepdim=True)) / (x.std(dim=(1, 2, 3), keepdim=True) + 1e-3)
            return self.fc(self.pool(torch.relu(self.conv(x))).flatten(1))

    path = tmp_path / "toy-arcface.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Embedder().eval(),
            torch.zeros(1, 3, 112, 112),
            str(path),
            input_names=["input"],
            output_names=["embedding"],
            dynamic_axes={"input": {0: "batch"}},
            dynamo=False,
        )
    path.with_suffix(".json").write_text(json.dumps({"mean": 127.5, "std": 127.5}))
    monkeypatch.setenv("KINEMA_FACE_EMBEDDER", str(path))
    return path


def test_identity_embedding_and_score(media, embedder_model, store):
    from kinema.cameo.face import get_embedder
    from kinema.media.files import read_mp4

    embedder = get_embedder()
    assert embedder.name == "toy-arcface.onnx" and "CPUExecutionProvider" in embedder.providers
    result = capture(media["person"], media["voice"])
    assert result.embedding.shape == (64,) and abs(np.linalg.norm(result.embedding) - 1) < 1e-5
    assert result.embedding_model == "toy-arcface.onnx"
    made = store.create("astro", "alice", result)
    assert made.public()["has_embedding"]

    # The person's own frames match their cameo; frames without a face get no score, not a guess.
    frames = read_mp4(media["person"])[0]
    own = cameo_lib.identity_scores(frames, (made,))["astro"]
    assert own["frames_with_face"] == own["frames_checked"] == 8 and own["score"] > 0.9
    assert cameo_lib.identity_scores(read_mp4(media["noface"])[0], (made,))["astro"]["score"] is None

    # A generated clip carries the score entry in its metadata (the tiny model draws noise, so no face).
    clip = kinema.generate(
        GenerationRequest("astro waves", cameos=("astro",), user="alice", backend="tiny-ltx2", **SMALL)
    )
    entry = clip.metadata["cameo_identity"]["astro"]
    assert entry["model"] == "toy-arcface.onnx" and entry["frames_checked"] == 8 and "score" in entry


# ---------------------------------------------------------------------------------- CLI


def test_cli_cameo_commands(media, monkeypatch, tmp_path):
    from click.testing import CliRunner

    from kinema.cli import cli

    runner = CliRunner()
    monkeypatch.setenv("KINEMA_USER", "alice")
    made = runner.invoke(
        cli, ["cameo", "create", "astro", "--video", str(media["person"]), "--audio", str(media["voice"])]
    )
    assert made.exit_code == 0, made.output
    assert "4 reference pictures" in made.output and "voice: " in made.output
    assert "astro (owner alice, voice, unverified): only the owner" in runner.invoke(cli, ["cameo", "list"]).output
    # Captured without a challenge, it is unverified: its owner's alone until verified.
    refused = runner.invoke(cli, ["cameo", "allow", "astro", "bob"])
    assert refused.exit_code != 0 and "unverified" in refused.output and "kinema cameo challenge" in refused.output
    mark_verified("astro")
    assert runner.invoke(cli, ["cameo", "allow", "astro", "bob", "--expires", "30d"]).exit_code == 0

    monkeypatch.setenv("KINEMA_USER", "eve")
    refused = runner.invoke(cli, ["generate", "astro dancing", "--cameo", "astro", "-o", str(tmp_path / "a.mp4")])
    assert refused.exit_code != 0 and "'eve' may not use cameo 'astro'" in refused.output
    assert runner.invoke(cli, ["cameo", "list"]).output.startswith("No cameos")

    monkeypatch.setenv("KINEMA_USER", "bob")
    out = tmp_path / "b.mp4"
    made = runner.invoke(
        cli,
        [
            "generate",
            "astro dancing",
            "--cameo",
            "astro",
            "--size",
            "32x32",
            "--steps",
            "2",
            "--seconds",
            "0.375",
            "-o",
            str(out),
        ],
    )
    assert made.exit_code == 0, made.output
    assert "cameo astro: identity match not scored" in made.output

    monkeypatch.setenv("KINEMA_USER", "alice")
    uses = runner.invoke(cli, ["cameo", "uses", "astro"])
    assert "by bob (tiny)" in uses.output and str(out.resolve()) in uses.output
    assert runner.invoke(cli, ["cameo", "revoke", "astro"]).exit_code == 0
    assert "[revoked]" in runner.invoke(cli, ["cameo", "list"]).output
    assert runner.invoke(cli, ["cameo", "delete", "astro", "--yes"]).exit_code == 0
    assert not (cameo_lib.CameoStore().root / "astro").exists()


# ---------------------------------------------------------------------------------- server


@pytest.fixture
def keys(kinema_env):
    from kinema.server.users import add_key

    return {user: {"Authorization": f"Bearer {add_key(user)}"} for user in ("alice", "bob", "eve")}


def api(start_workers=False):
    from fastapi.testclient import TestClient

    from kinema.server.app import create_app

    return TestClient(create_app(api_key=None, start_workers=start_workers), base_url="http://127.0.0.1")


def upload(client, headers, media, name="astro", video="person", audio="voice", **fields):
    files = {"video": (media[video].name, media[video].read_bytes(), "video/mp4")}
    if audio:
        files["audio"] = (media[audio].name, media[audio].read_bytes(), "audio/wav")
    return client.post("/v1/cameos", headers=headers, data={"name": name, **fields}, files=files)


def test_server_creates_cameos_from_uploads_and_enforces_consent(media, keys):
    with api() as client:
        made = upload(client, keys["alice"], media)
        assert made.status_code == 201, made.text
        assert made.json()["owner"] == "alice" and made.json()["has_voice"] and made.json()["references"] == 4
        for video, audio, code, param in (
            ("noface", None, "cameo_no_face", "video"),
            ("person", "silent", "cameo_no_speech", "audio"),
        ):
            refused = upload(client, keys["alice"], media, name="nope", video=video, audio=audio)
            assert refused.status_code == 400 and refused.json()["error"]["code"] == code
            assert refused.json()["error"]["param"] == param
        assert client.get("/v1/cameos/astro/reference", headers=keys["alice"]).headers["content-type"] == "image/png"
        # Made without a challenge, it is unverified: alice may not share it until it is verified.
        shared = client.post("/v1/cameos/astro/permissions", headers=keys["alice"], json={"permission": "everyone"})
        assert shared.status_code == 403 and shared.json()["error"]["code"] == "cameo_widen_unverified"
        assert made.json()["verified"] is False and made.json()["capture"]
        mark_verified("astro")

        for state, change in STATES.items():
            body = {
                "permission": change["permission"],
                "add_users": list(change.get("add_users", ())),
                "expires": change.get("expires"),
            }
            assert client.post("/v1/cameos/astro/permissions", headers=keys["alice"], json=body).status_code == 200
            if state == "revoked":
                assert client.post("/v1/cameos/astro/revoke", headers=keys["alice"]).json()["revoked"]
            for user in ("alice", "bob", "eve"):
                job = client.post(
                    "/v1/videos", headers=keys[user], json={"prompt": "astro surfing", "cameos": ["astro"], **API_SMALL}
                )
                if ALLOWED[(state, user)]:
                    assert job.status_code == 200, (state, user, job.text)
                    assert job.json()["status"] == "queued"
                else:
                    assert job.status_code == 403, (state, user, job.text)
                    expected = {"revoked": "revoked", "expired": "expired"}.get(state, "not_allowed")
                    assert job.json()["error"]["code"] == f"cameo_{expected}"
            listed = {c["id"] for c in client.get("/v1/cameos", headers=keys["eve"]).json()["data"]}
            assert listed == ({"astro"} if ALLOWED[(state, "eve")] else set())

        # Only the owner manages it; the others do not even learn it exists unless they may use it.
        client.post(
            "/v1/cameos/astro/permissions", headers=keys["alice"], json={"permission": "only_me", "expires": None}
        )
        assert client.get("/v1/cameos/astro", headers=keys["eve"]).status_code == 404
        assert client.get("/v1/cameos/astro/uses", headers=keys["bob"]).json()["error"]["code"] == "cameo_not_owner"
        assert client.delete("/v1/cameos/astro", headers=keys["bob"]).status_code == 403
        speech_path = client.post(
            "/v1/videos",
            headers=keys["alice"],
            json={"prompt": "x", "cameos": ["astro"], "speech": "/etc/passwd", **API_SMALL},
        )
        assert speech_path.status_code == 400 and speech_path.json()["error"]["param"] == "speech"
        assert client.delete("/v1/cameos/astro", headers=keys["alice"]).json()["deleted"]
        assert client.get("/v1/cameos/astro", headers=keys["alice"]).status_code == 404


def test_a_queued_job_whose_cameo_is_revoked_fails_with_that_reason(store, astro, keys):
    with api(start_workers=False) as client:  # the job waits in the queue
        job = client.post(
            "/v1/videos", headers=keys["alice"], json={"prompt": "astro waves", "cameos": ["astro"], **API_SMALL}
        ).json()
        assert job["status"] == "queued"
        assert client.post("/v1/cameos/astro/revoke", headers=keys["alice"]).status_code == 200
    with api(start_workers=True) as client:  # the server comes back and runs the queue
        deadline = time.monotonic() + 300
        while (video := client.get(f"/v1/videos/{job['id']}", headers=keys["alice"]).json())[
            "status"
        ] == "queued" or video["status"] == "in_progress":
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert video["status"] == "failed"
    assert video["error"]["code"] == "cameo_revoked" and "revoked" in video["error"]["message"]
    assert store.uses("astro", "alice") == []


def test_a_server_job_with_a_cameo_completes_and_is_logged(store, astro, keys):
    store.allow("astro", "alice", add_users=("bob",))
    with api(start_workers=True) as client:
        job = client.post(
            "/v1/videos", headers=keys["bob"], json={"prompt": "astro dances", "cameos": "astro", **API_SMALL}
        ).json()
        deadline = time.monotonic() + 300
        while (video := client.get(f"/v1/videos/{job['id']}", headers=keys["bob"]).json())["status"] not in (
            "completed",
            "failed",
        ):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert video["status"] == "completed", video
        uses = client.get("/v1/cameos/astro/uses", headers=keys["alice"]).json()["data"]
    assert [(u["user"], u["prompt"]) for u in uses] == [("bob", "astro dances")]
    assert uses[0]["saved_to"]  # the job's clip file


def test_a_key_named_after_the_login_user_is_not_the_owner(store, captured, monkeypatch):
    """`kinema keys add root` on a server run by root used to give that key the owner's cameos."""
    from click.testing import CliRunner
    from fastapi.testclient import TestClient

    from kinema.cli import cli
    from kinema.server.app import create_app
    from kinema.server.users import add_key

    monkeypatch.delenv("KINEMA_USER", raising=False)
    login = cameo_lib._login_name()
    made = store.create("owners", cameo_lib.local_user(), captured, verification=VERIFIED)
    assert made.owner == cameo_lib.SERVER_OWNER  # the CLI
    # As kinema wrote it before keys had identities: format 1, the owner under the login name.
    legacy = store.create("legacy", login, captured, verification=VERIFIED)
    record = json.loads((legacy.directory / cameo_lib.RECORD_FILE).read_text())["record"]
    store._write_record(legacy.directory, {**record, "format": 1})
    # What a key of the login name makes now is that user's, not the owner's.
    store.create("theirs", login, captured, verification=VERIFIED)
    login_key = {"Authorization": f"Bearer {add_key(login)}"}
    master = {"Authorization": "Bearer master-secret"}
    everyone = {"permission": "everyone"}
    with TestClient(
        create_app(api_key="master-secret", start_workers=False), base_url="http://kinema.example"
    ) as client:
        for name in ("owners", "legacy"):
            assert client.get(f"/v1/cameos/{name}", headers=login_key).status_code == 404
            refused = client.post(f"/v1/cameos/{name}/permissions", headers=login_key, json=everyone)
            assert refused.json()["error"]["code"] == "cameo_not_owner"
            assert client.delete(f"/v1/cameos/{name}", headers=login_key).status_code == 403
            assert client.get(f"/v1/cameos/{name}", headers=master).json()["owner"] == cameo_lib.SERVER_OWNER
            assert client.post(f"/v1/cameos/{name}/permissions", headers=master, json=everyone).status_code == 200
        assert client.post("/v1/cameos/theirs/permissions", headers=master, json=everyone).status_code == 403
        assert client.post("/v1/cameos/theirs/permissions", headers=login_key, json=everyone).status_code == 200
    # The owner's CLI manages the old cameo too, and its record now says who the owner is.
    assert CliRunner().invoke(cli, ["cameo", "allow", "legacy", "bob"]).exit_code == 0
    record = json.loads((legacy.directory / cameo_lib.RECORD_FILE).read_text())["record"]
    assert (record["format"], record["owner"]) == (cameo_lib.FORMAT, cameo_lib.SERVER_OWNER)


# ---------------------------------------------------------------------------------- ComfyUI node pair (logic)


def test_comfyui_cameo_nodes_capture_pick_and_generate(media, monkeypatch):
    """The node pair's logic as ComfyUI runs it (tests/test_comfyui.py imports the folder the same way)."""
    from test_comfyui import NODE_FOLDER, import_like_comfyui

    from kinema.media.files import read_mp4

    nodes = import_like_comfyui(NODE_FOLDER)
    cameo_logic = importlib.import_module(f"{nodes.__name__}.cameo_logic")
    monkeypatch.setenv("KINEMA_USER", "alice")
    frames, fps, audio, rate, _ = read_mp4(media["person"])
    voice = speech.read_wav(media["voice"])
    handle, references, report = cameo_logic.capture_cameo("astro", frames, fps, (voice[0][None], voice[1]))
    assert handle.name == "astro" and tuple(references.shape) == (4, 512, 512, 3) and "voice" in report
    assert cameo_logic.cameo_choices() == [cameo_logic.NO_CAMEO, "astro"]
    before = cameo_logic.consent_state("astro")

    picked, portrait = cameo_logic.use_cameo("astro", speak=True)
    assert tuple(portrait.shape) == (1, 512, 512, 3)
    model = nodes.logic.load_model("tiny-ltx2")
    images, sound, clip = nodes.logic.generate(
        model, "astro waves", seed=1, seconds=0.375, width=32, height=32, fps=24, steps=2, cameo=picked
    )
    assert clip.metadata["cameos"] == ["astro"] and clip.metadata["speech"] == "cameo:astro"

    CameoStore().revoke("astro", "alice")
    assert cameo_logic.consent_state("astro") != before  # ComfyUI re-runs the picker, which now refuses
    with pytest.raises(CameoNotAllowedError):
        cameo_logic.use_cameo("astro")
    with pytest.raises(CameoNotAllowedError):
        nodes.logic.generate(
            model, "astro waves", seed=1, seconds=0.375, width=32, height=32, fps=24, steps=2, cameo=picked
        )


@pytest.mark.skipif(not os.environ.get("KINEMA_COMFYUI_DIR"), reason="set KINEMA_COMFYUI_DIR to run inside ComfyUI")
def test_cameo_nodes_inside_comfyui(media, comfy):
    """Load Video -> Kinema Cameo Capture -> Kinema Generate -> Kinema Save Clip, in a real ComfyUI."""
    (comfy.base / "input").mkdir(exist_ok=True)
    shutil.copy(media["person"], comfy.base / "input" / "person.mp4")
    workflow = {
        "1": {"class_type": "LoadVideo", "inputs": {"file": "person.mp4"}},
        "2": {
            "class_type": "KinemaCameoCapture",
            "inputs": {
                "name": "astro",
                "video": ["1", 0],
                "permission": "only_me",
                "allowed_users": "",
                "replace": True,
            },
        },
        "3": {
            "class_type": "KinemaModelLoader",
            "inputs": {"backend": "tiny-ltx2", "model": "(backend default)", "precision": "auto", "memory": "auto"},
        },
        "4": {
            "class_type": "KinemaGenerate",
            "inputs": {
                "model": ["3", 0],
                "prompt": "astro waves",
                "negative_prompt": "",
                "seconds": 0.375,
                "width": 32,
                "height": 32,
                "fps": 24.0,
                "steps": 2,
                "guidance": -1.0,
                "seed": 1,
                "style": "none",
                "audio": True,
                "cameo": ["2", 0],
            },
        },
        "5": {"class_type": "KinemaSaveClip", "inputs": {"clip": ["4", 3], "filename_prefix": "kinema/cameo"}},
    }
    entry = comfy.run(workflow)
    assert entry["status"]["status_str"] == "success", comfy.errors(entry)
    assert "cameo astro: 4 references" in entry["outputs"]["2"]["text"][0]
    saved = entry["outputs"]["5"]["images"][0]
    clip = kinema.Clip.load(comfy.base / "output" / saved["subfolder"] / saved["filename"])
    assert clip.metadata["cameos"] == ["astro"]
