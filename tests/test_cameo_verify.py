"""The verification itself: the recording says the challenge's digits, with the mouth of the face it keeps.

Media made here: scikit-image's astronaut photo (Eileen Collins, NASA) whose mouth opens with the loudness of
a voice, and digits spoken by Debian's espeak-ng (`apt-get install espeak-ng`). No offline recogniser hears
espeak-ng's digits reliably, so the matching logic is given known transcripts; the recogniser's own plumbing runs
a tiny, randomly initialised Whisper built here (it hears nonsense, so a real recording is refused as the wrong
code: what matters is that every step ran).
"""

import shutil
import subprocess
from fractions import Fraction

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
skimage_data = pytest.importorskip("skimage.data")
if shutil.which("espeak-ng") is None:
    pytest.skip("needs espeak-ng to speak the digits: apt-get install espeak-ng", allow_module_level=True)

from kinema.cameo import challenge as challenges  # noqa: E402
from kinema.cameo import verify  # noqa: E402
from kinema.cameo.challenge import ChallengeError  # noqa: E402
from kinema.cameo.make import make_cameo  # noqa: E402
from kinema.cameo.verify import VerificationError, spoken_digits  # noqa: E402
from kinema.media import speech  # noqa: E402
from kinema.media.files import write_mp4  # noqa: E402
from kinema.media.hashing import file_sha256  # noqa: E402

FPS = 25
RATE = 16000
VOICES = ("en", "en-us", "en+f3", "en+m3")


def phrase(digits: str) -> str:
    return "my kinema code is " + " ".join(challenges.DIGIT_WORDS[int(d)] for d in digits)


def say(text: str, folder, index: int = 0) -> np.ndarray:
    """``text`` spoken by espeak-ng (a voice and speed that vary with ``index``), mono at RATE."""
    path = folder / f"said-{index}-{abs(hash(text))}.wav"
    subprocess.run(
        ["espeak-ng", "-s", str(130 + 10 * (index % 5)), "-v", VOICES[index % 4], "-w", str(path), text], check=True
    )
    return speech.decode_audio(path, RATE)[0]


class Face:
    """The astronaut, whose mouth (found from the Haar box: a third of its size below the centre) opens on cue."""

    def __init__(self, side: int = 320):
        from kinema.cameo.face import HaarDetector

        self.image = cv2.resize(skimage_data.astronaut()[0:360, 50:410], (side, side), interpolation=cv2.INTER_AREA)
        found = HaarDetector().detect(self.image)[0]
        (self.cx, self.cy), self.size = found.center, found.size

    def frames(self, opening: np.ndarray, seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        out = []
        for amount in opening:
            frame = self.image.copy()
            height = int(round(amount * 0.09 * self.size))
            if height > 0:
                centre = (int(self.cx), int(self.cy + 0.3 * self.size))
                cv2.ellipse(frame, centre, (int(0.13 * self.size), height), 0, 0, 360, (70, 25, 25), -1)
            noise = rng.integers(-3, 4, frame.shape)  # sensor noise: no two frames are the same
            out.append(np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8))
        return np.stack(out)


def opening(voice: np.ndarray, count: int) -> np.ndarray:
    """How far the mouth is open at each of ``count`` frames: the voice's loudness then, 0 to 1."""
    half = RATE // (2 * FPS)
    centres = ((np.arange(count) + 0.5) / FPS * RATE).astype(int)
    rms = np.array(
        [np.sqrt(np.mean(voice[max(0, c - half) : c + half] ** 2)) if c < len(voice) else 0 for c in centres]
    )
    return np.clip(rms / (rms.max() + 1e-9), 0, 1) ** 0.5


def pad(voice: np.ndarray, before: float, after: float) -> np.ndarray:
    return np.concatenate([np.zeros(int(before * RATE), np.float32), voice, np.zeros(int(after * RATE), np.float32)])


def pair(lips: np.ndarray, voice: np.ndarray, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(the mouth's openings, the sound): lips that say ``lips``, and ``voice`` heard ``shift`` seconds later."""
    heard = pad(voice, 0.4 + shift, 0.5)
    mouthed = pad(lips, 0.4, 0.5 + shift)
    count = int(len(heard) / RATE * FPS)
    return opening(mouthed, count), heard[: int(count / FPS * RATE)]


def score(face: Face, mouth: np.ndarray, sound: np.ndarray, seed: int = 0) -> float:
    """verify's score for a recording, computed on the frames as made (no encoding)."""
    frames = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in face.frames(mouth, seed)])
    times = np.arange(len(frames)) / FPS
    track = [(0.0, face.cx, face.cy, face.size), (float(times[-1]), face.cx, face.cy, face.size)]
    return verify.lipsync_score(
        verify.mouth_signal(frames, times, track), verify.speech_envelope(sound, RATE, times), times
    )[0]


@pytest.fixture(scope="module")
def face():
    return Face()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("verify-media")


def record(face: Face, folder, name: str, mouth: np.ndarray, sound: np.ndarray, frames: np.ndarray | None = None):
    frames = face.frames(mouth) if frames is None else frames
    return write_mp4(folder / f"{name}.mp4", frames, Fraction(FPS), sound[None], RATE)


def knows(text: str):
    """A transcriber that hears ``text``: the recogniser's step, given a known transcript."""
    return lambda sound, rate: text


# ---------------------------------------------------------------------------------- the digits


@pytest.mark.parametrize(
    "transcript, digits",
    [
        ("My kinema code is four seven two nine one.", "47291"),
        ("my kinema code is 4 7 2 9 1", "47291"),
        ("My Kinema code is 47291.", "47291"),
        ("my cinema code is forty-seven, twenty-nine, one", "47291"),
        ("my kinema code is oh for to nine won", "04291"),
        ("My kinema code is twelve eighty.", "1280"),
        ("", ""),
    ],
)
def test_spoken_digits(transcript, digits):
    assert spoken_digits(transcript) == digits


# ---------------------------------------------------------------------------------- whole recordings


@pytest.fixture(scope="module")
def takes(face, folder):
    """One challenge's code said in three recordings: a match, lips from other words, the voice 400 ms late."""
    said = say(phrase("47291"), folder)
    other = say(phrase("80356"), folder, index=1)
    return {
        "match": record(face, folder, "match", *pair(said, said)),
        "other_lips": record(face, folder, "other-lips", *pair(other, said)),
        "shifted": record(face, folder, "shifted", *pair(said, said, shift=0.4)),
        "said": said,
    }


def fixed(digits: str, user: str = "alice") -> challenges.Challenge:
    """A challenge for ``user`` with known digits (issued, then its digits set as the recording says them)."""
    issued = challenges.issue(user)
    path = challenges._folder() / f"{issued.id}.json"
    path.write_text(path.read_text().replace(f'"digits": "{issued.digits}"', f'"digits": "{digits}"'))
    return challenges.Challenge(issued.id, user, digits, issued.issued_at, issued.expires_at)


def test_a_matching_recording_is_verified_and_the_record_says_what_was_checked(takes):
    challenge = fixed("47291")
    heard = "My kinema code is four seven two nine one."
    made, _ = make_cameo("astro", "alice", takes["match"], challenge=challenge.id, transcriber=knows(heard))
    assert made.verified and made.public()["verified"]
    record = made.verification
    assert record["challenge"]["id"] == challenge.id and record["challenge"]["digits"] == "47291"
    assert record["transcript"] == heard and record["digits_heard"] == "47291"
    assert record["scores"]["lipsync"] >= verify.LIPSYNC_THRESHOLD
    assert record["hashes"]["recording_sha256"] == file_sha256(takes["match"])
    # Verified, it may be shared.
    from kinema.cameo.store import CameoStore

    assert CameoStore().allow("astro", "alice", permission="everyone").permission == "everyone"


@pytest.mark.parametrize(
    "take, transcript, reason",
    [
        ("other_lips", "my kinema code is four seven two nine one", "lips_mismatch"),
        ("shifted", "my kinema code is four seven two nine one", "lips_mismatch"),
        ("match", "my kinema code is four seven two nine six", "wrong_code"),
        ("match", "", "wrong_code"),
    ],
)
def test_each_failure_has_its_reason(takes, take, transcript, reason):
    challenge = fixed("47291")
    with pytest.raises(VerificationError) as refused:
        make_cameo("astro", "alice", takes[take], challenge=challenge.id, transcriber=knows(transcript))
    assert refused.value.reason == reason
    from kinema.cameo.store import CameoStore

    assert not CameoStore().exists("astro")


def test_an_expired_challenge_is_refused_before_anything_is_checked(takes):
    challenge = fixed("47291")
    path = challenges._folder() / f"{challenge.id}.json"
    path.write_text(path.read_text().replace(f'"expires_at": {challenge.expires_at}', '"expires_at": 1.0'))
    with pytest.raises(ChallengeError) as refused:
        make_cameo("astro", "alice", takes["match"], challenge=challenge.id, transcriber=knows(phrase("47291")))
    assert refused.value.reason == "expired"


def test_a_different_face_speaking_is_refused(face, folder, takes):
    """The cameo keeps the large face; a smaller one beside it (too small to count as a second person) speaks."""
    mouth, sound = pair(takes["said"], takes["said"])
    still = face.frames(np.zeros_like(mouth))
    talking = face.frames(mouth)
    small = np.stack([cv2.resize(f, (120, 120), interpolation=cv2.INTER_AREA) for f in talking])
    side = np.full((len(still), still.shape[1], 160, 3), 200, np.uint8)
    side[:, 100:220, 20:140] = small
    path = record(face, folder, "two-faces", mouth, sound, frames=np.concatenate([still, side], axis=2))
    challenge = fixed("47291")
    with pytest.raises(VerificationError) as refused:
        make_cameo("astro", "alice", path, challenge=challenge.id, transcriber=knows(phrase("47291")))
    assert refused.value.reason == "different_face"


# ---------------------------------------------------------------------------------- the threshold


def test_the_lipsync_threshold_separates_matched_from_mismatched_pairs(face, folder):
    """20 matched pairs, 20 mismatched (10 other words, 10 the same voice 300-500 ms late): the equal error
    rate, measured on synthetic media only (calibration on real camera footage is still to come)."""
    rng = np.random.default_rng(7)
    codes = ["".join(str(d) for d in rng.integers(0, 10, challenges.DIGITS)) for _ in range(20)]
    voices = [say(phrase(code), folder, index=i) for i, code in enumerate(codes)]
    matched = [score(face, *pair(v, v), seed=i) for i, v in enumerate(voices)]
    other = [score(face, *pair(voices[(i + 7) % 20], voices[i]), seed=i) for i in range(10)]
    shifted = [score(face, *pair(voices[i], voices[i], shift=0.3 + 0.1 * (i % 3)), seed=i) for i in range(10, 20)]
    mismatched = other + shifted
    thresholds = np.linspace(0, 1, 201)
    false_reject = np.array([np.mean(np.array(matched) < t) for t in thresholds])
    false_accept = np.array([np.mean(np.array(mismatched) >= t) for t in thresholds])
    at = int(np.argmin(np.abs(false_reject - false_accept)))
    eer = (false_reject[at] + false_accept[at]) / 2
    print(
        f"\nlipsync: matched {min(matched):.2f}-{max(matched):.2f}, other words {min(other):.2f}-{max(other):.2f},"
        f" shifted {min(shifted):.2f}-{max(shifted):.2f}; equal error rate {eer:.1%} at {thresholds[at]:.2f}"
    )
    assert eer <= 0.05
    assert np.mean(np.array(matched) < verify.LIPSYNC_THRESHOLD) <= 0.05
    assert np.mean(np.array(mismatched) >= verify.LIPSYNC_THRESHOLD) <= 0.05


# ---------------------------------------------------------------------------------- the recogniser's plumbing


@pytest.fixture
def tiny_whisper(tmp_path_factory, monkeypatch):
    from tiny_whisper import build_tiny_whisper

    folder = build_tiny_whisper(tmp_path_factory.mktemp("tiny-whisper"))
    monkeypatch.setenv(verify.RECOGNIZER_ENV, str(folder))
    return folder


def test_with_a_recogniser_installed_the_challenge_is_checked_end_to_end(tiny_whisper, takes, kinema_env):
    from click.testing import CliRunner
    from fastapi.testclient import TestClient

    from kinema.cli import cli
    from kinema.server.app import create_app
    from kinema.server.users import add_key

    doctor = next(row for row in CliRunner().invoke(cli, ["doctor"]).output.splitlines() if "cameo verification" in row)
    assert doctor.startswith("ok ") and tiny_whisper.name in doctor
    heard = verify.transcribe(speech.decode_audio(takes["match"], RATE)[0], RATE)
    assert isinstance(heard, str)  # nonsense from random weights, decoded with the model's own tokenizer

    keys = {user: {"Authorization": f"Bearer {add_key(user)}"} for user in ("alice", "bob")}
    video = {"video": ("me.mp4", takes["match"].read_bytes(), "video/mp4")}
    with TestClient(create_app(api_key="master-key-0123456789", start_workers=False)) as client:

        def send(user, challenge, **fields):
            return client.post(
                "/v1/cameos", headers=keys[user], data={"name": "astro", "challenge": challenge, **fields}, files=video
            )

        issued = client.post("/v1/cameos/challenge", headers=keys["alice"]).json()
        assert send("bob", issued["id"]).json()["error"]["code"] == "challenge_not_yours"
        wrong = send("alice", issued["id"])  # the tiny model does not hear "4 7 2 9 1", nor this challenge's code
        assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "cameo_wrong_code", wrong.text
        assert "heard" in wrong.json()["error"]["message"]
        assert send("alice", issued["id"]).json()["error"]["code"] == "challenge_used"
        late = client.post("/v1/cameos/challenge", headers=keys["alice"]).json()
        path = challenges._folder() / f"{late['id']}.json"
        path.write_text(path.read_text().replace(f'"expires_at": {late["expires_at"]}', '"expires_at": 1'))
        assert send("alice", late["id"]).json()["error"]["code"] == "challenge_expired"
        # With a recogniser there, a challenge lets the cameo be shared from the start (if it checks out).
        fresh = client.post("/v1/cameos/challenge", headers=keys["alice"]).json()
        shared = send("alice", fresh["id"], permission="everyone")
        assert shared.json()["error"]["code"] == "cameo_wrong_code"
