"""New lines in a cameo's voice: a tiny random Dia (transformers' own classes, built offline, tests/tiny_dia.py)
speaks a dialogue line from the cameo's recorded sample, the line drives the tiny LTX-2, and the clip's sound is
that line; consent for the voice is separate from the face's, and a clip's provenance says the voice is synthetic.
"""

import numpy as np
import pytest

pytest.importorskip("cv2")
pytest.importorskip("skimage.data")

from cameo_helpers import mark_verified  # noqa: E402
from test_cameos import capture_person, make_media  # noqa: E402
from tiny_dia import build_tiny_dia  # noqa: E402

import kinema  # noqa: E402
from kinema import GenerationRequest, InvalidRequestError  # noqa: E402
from kinema.cameo.store import CameoNotAllowedError, CameoStore  # noqa: E402
from kinema.errors import MissingWeightsError  # noqa: E402
from kinema.media import provenance, speech, tts  # noqa: E402

SMALL = dict(width=32, height=32, seconds=0.375, fps=24, steps=2, seed=1)
LINE = "Welcome aboard, everyone."


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    return make_media(tmp_path_factory.mktemp("voice-media"))


@pytest.fixture(scope="module")
def captured(media):
    return capture_person(media)


@pytest.fixture(scope="module")
def voice_model(tmp_path_factory):
    return build_tiny_dia(tmp_path_factory.mktemp("tiny-dia"))


@pytest.fixture
def astro(captured, voice_model, monkeypatch):
    """Alice's verified cameo, shared with bob for its face; the tiny voice model installed."""
    monkeypatch.setenv(tts.VOICE_MODEL_ENV, str(voice_model))
    # The tiny codec runs its convolutions at 44.1 kHz on a CPU: one second of the voice is plenty to continue.
    monkeypatch.setattr(tts, "MAX_PROMPT_SECONDS", 1.0)
    store = CameoStore()
    store.create("astro", "alice", captured)
    mark_verified("astro", store)
    return store.allow("astro", "alice", add_users=("bob",))


def test_a_line_in_the_cameos_voice_drives_tiny_ltx2_and_is_the_clips_sound(astro, voice_model, tmp_path):
    request = GenerationRequest("astro greets the crew", cameos=("astro",), dialogue=LINE, user="bob", **SMALL)
    request = request.with_(backend="tiny-ltx2")
    # Bob may show astro's face, but astro's owner has not let others make it speak (a record without the key).
    assert astro.voice_allowed is False and astro.public()["voice_allowed"] is False
    with pytest.raises(CameoNotAllowedError, match="kinema cameo allow astro --voice") as refused:
        kinema.generate(request)
    assert refused.value.reason == "voice_not_allowed"
    with pytest.raises(CameoNotAllowedError, match="allows its face but not its voice"):
        kinema.generate(request.with_(dialogue=None, speech="astro"))  # the recorded voice too

    CameoStore().allow("astro", "alice", voice=True)
    clip = kinema.generate(request)

    # The line the voice model says for these arguments, at the clip's length, resampled to the clip's rate.
    voice = speech.read_wav(astro.voice_path)
    line = tts.speak(LINE, voice=voice, seconds=SMALL["seconds"], seed=SMALL["seed"], folder=voice_model)
    assert line.rate == 44100 and line.prompt_seconds == pytest.approx(1.0)
    expected = speech.resample(line.audio, line.rate, clip.sample_rate)
    assert expected.shape[0] == clip.audio.shape[1]  # 0.375 s at the vocoder's rate
    assert np.abs(expected).max() > 0  # the model said something
    for channel in clip.audio:
        assert np.array_equal(channel, expected)  # sample for sample

    line_record = clip.metadata["voice_line"]
    assert line_record["synthetic"] is True and line_record["voice_of"] == "astro"
    assert line_record["voice_consent"] == "voice permission" and line_record["text"] == LINE
    assert clip.metadata["speech"] == "voice line: cameo:astro"
    # The signed manifest says a synthetic voice spoke, and whose; the words themselves only as a hash.
    report = provenance.verify(clip.save(tmp_path / "line.mp4"))
    assert report.ok
    assert report.generation["voice_line"]["synthetic"] is True
    assert report.generation["voice_line"]["voice_of"] == "astro"
    assert LINE not in str(report.generation)
    assert any("voice: synthetic" in text and "astro's voice" in text for text in report.lines())


def test_the_owner_always_may_and_a_withdrawn_voice_is_refused_again(astro):
    owner = GenerationRequest("x", cameos=("astro",), dialogue="Hi.", user="alice", backend="tiny-ltx2", **SMALL)
    assert kinema.generate(owner).metadata["voice_line"]["voice_consent"] == "owner"
    store = CameoStore()
    store.allow("astro", "alice", voice=True)
    assert store.get("astro").public()["voice_allowed"] is True
    # Withdrawn while bob's clip is being made: the clip is not handed over.
    withdraw = lambda event: event.step == 1 and store.allow("astro", "alice", voice=False)  # noqa: E731
    with pytest.raises(CameoNotAllowedError) as refused:
        kinema.generate(owner.with_(user="bob"), progress=withdraw)
    assert refused.value.reason == "voice_not_allowed"
    with pytest.raises(CameoNotAllowedError) as refused:
        kinema.generate(owner.with_(user="bob"))
    assert refused.value.reason == "voice_not_allowed"
    # Its owner's use log says which uses made it speak.
    assert [use.get("voice") for use in store.uses("astro", "alice")] == ["line"]


def test_dialogue_requests_are_checked_before_anything_loads(astro, monkeypatch, tmp_path):
    with pytest.raises(InvalidRequestError, match="dialogue must be the words"):
        GenerationRequest("x", dialogue="  ")
    with pytest.raises(InvalidRequestError, match="speech must name one of the request's cameos"):
        GenerationRequest("x", dialogue="Hi.", speech=(np.ones(100, np.float32), 16000))
    with pytest.raises(InvalidRequestError, match="say whose voice"):
        GenerationRequest("x", dialogue="Hi.", cameos=("astro", "other"))
    with pytest.raises(InvalidRequestError, match="leave out \\[S1\\]"):
        GenerationRequest("x", dialogue="[S1] Hi.")
    with pytest.raises(InvalidRequestError, match="cannot speak a dialogue line"):
        kinema.generate(GenerationRequest("x", dialogue="Hi.", backend="tiny-wan", **SMALL))
    monkeypatch.delenv(tts.VOICE_MODEL_ENV)
    with pytest.raises(MissingWeightsError, match=f"kinema models pull {tts.DEFAULT_VOICE_MODEL}"):
        kinema.generate(GenerationRequest("x", dialogue="Hi.", backend="tiny-ltx2", **SMALL))
    empty = tmp_path / "no-codec"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    monkeypatch.setenv(tts.VOICE_MODEL_ENV, str(empty))
    assert tts.status()[0] is False and tts.DEFAULT_CODEC in tts.status()[1]


def test_the_cli_sets_the_voice_and_remote_permissions(astro, monkeypatch):
    from click.testing import CliRunner

    from kinema.cli import cli

    monkeypatch.setenv("KINEMA_USER", "alice")
    result = CliRunner().invoke(cli, ["cameo", "allow", "astro", "--voice", "--remote"])
    assert result.exit_code == 0, result.output
    assert "voice: others may use it; remote engines: allowed" in result.output
    cameo = CameoStore().get("astro")
    assert cameo.voice_allowed and cameo.remote_allowed
    result = CliRunner().invoke(cli, ["cameo", "allow", "astro", "--no-remote"])
    assert "voice: others may use it; remote engines: never" in result.output
    assert CameoStore().get("astro").remote_allowed is False
    doctor = CliRunner().invoke(cli, ["doctor"]).output
    assert "on: lines spoken by" in next(row for row in doctor.splitlines() if "voice lines" in row)


def test_the_server_sets_the_voice_permission_and_refuses_a_kept_voice_at_once(astro):
    from fastapi.testclient import TestClient

    from kinema.server.app import create_app
    from kinema.server.users import add_key

    alice, bob = ({"Authorization": f"Bearer {add_key(user)}"} for user in ("alice", "bob"))
    job = {"prompt": "x", "cameos": ["astro"], "dialogue": "Hi.", "model": "tiny-ltx2", "size": "32x32"}
    with TestClient(create_app(api_key=None, start_workers=False), base_url="http://127.0.0.1") as client:
        refused = client.post("/v1/videos", json=job, headers=bob)  # when submitted, before it queues
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "cameo_voice_not_allowed"
        assert "kinema cameo allow astro --voice" in refused.json()["error"]["message"]
        assert client.post("/v1/cameos/astro/permissions", json={"voice": True}, headers=bob).status_code == 403
        changed = client.post("/v1/cameos/astro/permissions", json={"voice": True}, headers=alice)
        assert changed.status_code == 200, changed.text
        assert changed.json()["voice_allowed"] is True and changed.json()["remote_allowed"] is False
        queued = client.post("/v1/videos", json=job, headers=bob)
        assert queued.status_code == 200, queued.text


def test_a_storyboard_shot_speaks_its_cameos_line_in_its_voice(astro, monkeypatch):
    from kinema.storyboard import StoryboardError, parse_storyboard, run_storyboard

    board = parse_storyboard(
        "Size: 32x32\nSteps: 2\nFps: 24\nBackend: tiny-ltx2\n"
        "Shot 1 (0.375s): astro on the bridge\n  Cameo: astro\n  Say: Astro: Welcome aboard.\n  Say: Someone: Hello?\n"
        "Shot 2 (0.375s): the stars\n  Say: Someone: Look.\n"
    )
    made = run_storyboard(board, user="alice")
    first, second = made.shots
    assert first.generated.metadata["voice_line"]["text"] == "Welcome aboard."  # the cameo's line, in its voice
    assert first.generated.metadata["voice_line"]["voice_of"] == "astro"
    assert "voice_line" not in second.generated.metadata  # nobody's voice: the line stays in the prompt
    with pytest.raises(CameoNotAllowedError, match="kinema cameo allow astro --voice"):
        run_storyboard(board, user="bob", cache=False)
    monkeypatch.delenv(tts.VOICE_MODEL_ENV)
    with pytest.raises(StoryboardError, match="shot 1: astro's line is spoken in that cameo's voice, which needs"):
        run_storyboard(board, user="alice", cache=False)


def test_a_cameo_captured_with_a_recogniser_keeps_what_its_voice_says_for_its_lines(media, voice_model, monkeypatch):
    """Dia continues a voice best when it reads what the sample says: make_cameo transcribes the voice sample's first
    seconds (here a known transcript stands in for the recogniser) and signs it into the record; lines read it."""
    from kinema.cameo.face import HaarDetector
    from kinema.cameo.make import make_cameo

    monkeypatch.setenv(tts.VOICE_MODEL_ENV, str(voice_model))
    monkeypatch.setattr(tts, "MAX_PROMPT_SECONDS", 1.0)
    heard = []

    def transcriber(sound, rate):
        heard.append(sound.shape[0] / rate)
        return "my kinema code is four seven"

    made, _ = make_cameo(
        "speaker",
        "alice",
        media["person"],
        media["voice"],
        detector=HaarDetector(),
        embedder=None,
        transcriber=transcriber,
    )
    assert made.capture["voice_transcript"] == "my kinema code is four seven" and heard[-1] == pytest.approx(1.0)
    clip = kinema.generate(
        GenerationRequest("x", cameos=("speaker",), dialogue=LINE, user="alice", backend="tiny-ltx2", **SMALL)
    )
    assert clip.metadata["voice_line"]["voice_transcript"] is True
    voice = speech.read_wav(made.voice_path)
    line = tts.speak(
        LINE, voice=voice, transcript="my kinema code is four seven", seconds=SMALL["seconds"], seed=SMALL["seed"]
    )
    assert np.array_equal(clip.audio[0], speech.resample(line.audio, line.rate, clip.sample_rate))
