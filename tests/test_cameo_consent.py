"""Consent that proves the person: one-time challenges, unverified cameos, takedown by the person shown.

Media as in tests/test_cameos.py: scikit-image's astronaut filmed by a moving crop, a synthesised voice.
"""

import importlib
import json

import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("skimage.data")

from test_cameos import API_SMALL, SMALL, api, capture_person, make_media, upload  # noqa: E402

import kinema  # noqa: E402
from kinema import GenerationRequest  # noqa: E402
from kinema.cameo import challenge as challenges  # noqa: E402
from kinema.cameo import store as cameo_lib  # noqa: E402
from kinema.cameo.challenge import ChallengeError  # noqa: E402
from kinema.cameo.make import make_cameo  # noqa: E402
from kinema.cameo.store import CameoNotAllowedError, CameoStore  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    return make_media(tmp_path_factory.mktemp("cameo-media"))


@pytest.fixture(scope="module")
def captured(media):
    return capture_person(media)


def refused(action) -> str:
    with pytest.raises(ChallengeError) as caught:
        action()
    return caught.value.reason


# ---------------------------------------------------------------------------------- challenges


def test_a_challenge_is_a_phrase_of_digits_for_one_user_once_and_briefly():
    issued = challenges.issue("alice", now=1000.0)
    assert len(issued.digits) == challenges.DIGITS and issued.digits.isdigit()
    assert issued.phrase.endswith(" ".join(challenges.DIGIT_WORDS[int(d)] for d in issued.digits))
    assert issued.expires_at == 1000.0 + challenges.CHALLENGE_SECONDS
    assert len({challenges.issue("alice").digits for _ in range(8)}) > 1  # random, not a fixed code

    assert refused(lambda: challenges.redeem(issued.id, "bob", now=1001.0)) == "not_yours"
    assert challenges.redeem(issued.id, "alice", now=1001.0) == issued
    assert refused(lambda: challenges.redeem(issued.id, "alice", now=1002.0)) == "used"

    late = challenges.issue("alice", now=1000.0)
    assert refused(lambda: challenges.redeem(late.id, "alice", now=late.expires_at + 1)) == "expired"
    assert refused(lambda: challenges.redeem("chl_" + "0" * 24, "alice")) == "unknown"
    assert refused(lambda: challenges.redeem("../../etc/passwd", "alice")) == "unknown"
    # A failed redeem (wrong user, too late) does not use it up for its owner.
    fresh = challenges.issue("alice")
    refused(lambda: challenges.redeem(fresh.id, "bob"))
    assert challenges.redeem(fresh.id, "alice").id == fresh.id


def test_a_capture_with_a_challenge_records_it_and_uses_it_up(media):
    issued = challenges.issue("alice")
    made, _ = make_cameo("astro", "alice", media["person"], challenge=issued.id, embedder=None)
    # No speech-recognition model is installed here: the cameo is made, unverified, and says why.
    assert not made.verified
    assert made.verification["challenge"]["id"] == issued.id
    assert made.verification["challenge"]["digits"] == issued.digits
    assert "no speech-recognition model" in made.verification["why"]
    with pytest.raises(ChallengeError, match="already used"):
        make_cameo("other", "alice", media["person"], challenge=issued.id, embedder=None)
    assert not CameoStore().exists("other")


def test_cli_challenge_then_create(media, monkeypatch):
    from click.testing import CliRunner

    from kinema.cli import cli

    runner = CliRunner()
    monkeypatch.setenv("KINEMA_USER", "alice")
    shown = runner.invoke(cli, ["cameo", "challenge", "--json"])
    assert shown.exit_code == 0, shown.output
    issued = json.loads(shown.output)
    assert issued["id"].startswith("chl_") and issued["user"] == "alice" and issued["expires_in"] == 300
    text = runner.invoke(cli, ["cameo", "challenge"]).output
    assert text.startswith('Say: "my kinema code is ') and "--challenge chl_" in text

    monkeypatch.setenv("KINEMA_USER", "bob")
    theirs = runner.invoke(
        cli, ["cameo", "create", "bobby", "--video", str(media["person"]), "--challenge", issued["id"]]
    )
    assert theirs.exit_code != 0 and "issued to another user" in theirs.output

    monkeypatch.setenv("KINEMA_USER", "alice")
    made = runner.invoke(
        cli, ["cameo", "create", "astro", "--video", str(media["person"]), "--challenge", issued["id"]]
    )
    assert made.exit_code == 0, made.output
    assert "unverified" in made.output
    again = runner.invoke(
        cli, ["cameo", "create", "astro2", "--video", str(media["person"]), "--challenge", issued["id"]]
    )
    assert again.exit_code != 0 and "already used" in again.output


def _expire(challenge_id: str) -> None:
    """The challenge as it is CHALLENGE_SECONDS + 1 later: issued that much earlier."""
    path = cameo_lib.kinema_home() / "cameo-challenges" / f"{challenge_id}.json"
    stored = json.loads(path.read_text())
    stored["issued_at"] -= challenges.CHALLENGE_SECONDS + 1
    stored["expires_at"] -= challenges.CHALLENGE_SECONDS + 1
    path.write_text(json.dumps(stored))


@pytest.fixture
def keys(kinema_env):
    from kinema.server.users import add_key

    return {user: {"Authorization": f"Bearer {add_key(user)}"} for user in ("alice", "bob", "eve")}


def test_server_challenges_on_cameos_and_characters(media, keys):
    with api() as client:
        issued = client.post("/v1/cameos/challenge", headers=keys["alice"])
        assert issued.status_code == 201, issued.text
        body = issued.json()
        assert body["object"] == "cameo.challenge" and body["user"] == "alice" and len(body["digits"]) == 5
        assert body["phrase"].startswith("my kinema code is ")

        def send(headers, challenge, name="astro"):
            return upload(client, headers, media, name=name, audio=None, challenge=challenge)

        wrong_user = send(keys["bob"], body["id"])
        assert wrong_user.status_code == 403 and wrong_user.json()["error"]["code"] == "challenge_not_yours"
        assert wrong_user.json()["error"]["param"] == "challenge"
        made = send(keys["alice"], body["id"])
        assert made.status_code == 201, made.text
        assert made.json()["verified"] is False and made.json()["capture"]
        reused = send(keys["alice"], body["id"], name="astro2")
        assert reused.status_code == 409 and reused.json()["error"]["code"] == "challenge_used"
        unknown = send(keys["alice"], "chl_" + "1" * 24, name="astro3")
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "challenge_unknown"
        late = client.post("/v1/cameos/challenge", headers=keys["alice"]).json()
        _expire(late["id"])
        expired = send(keys["alice"], late["id"], name="astro4")
        assert expired.status_code == 409 and expired.json()["error"]["code"] == "challenge_expired"

        # OpenAI's create_character takes it in extra_body: a form field named challenge.
        fresh = client.post("/v1/cameos/challenge", headers=keys["bob"]).json()
        video = {"video": ("me.mp4", media["person"].read_bytes(), "video/mp4")}
        character = client.post(
            "/v1/videos/characters", headers=keys["bob"], data={"name": "Bob", "challenge": fresh["id"]}, files=video
        )
        assert character.status_code == 200, character.text
        assert character.json()["kinema"]["verified"] is False
        again = client.post(
            "/v1/videos/characters", headers=keys["bob"], data={"name": "Bob 2", "challenge": fresh["id"]}, files=video
        )
        assert again.json()["error"]["code"] == "challenge_used"
    record = CameoStore().get("bob").verification
    assert record["challenge"]["id"] == fresh["id"]


def test_the_hosts_client_asks_for_a_challenge_and_sends_it_with_the_recording(media, keys):
    """kinema's stdlib client (Blender's and OBS's copy): the phrase, then the upload with the challenge id; the
    server's refusals arrive as APIError with its code."""
    from servers import ThreadServer

    from kinema.client import APIError, Client
    from kinema.server.app import create_app

    server = ThreadServer(create_app(api_key=None, start_workers=False))
    try:
        alice = Client(server.url, api_key=keys["alice"]["Authorization"][7:])
        issued = alice.cameo_challenge()
        assert issued["phrase"].endswith(" ".join(challenges.DIGIT_WORDS[int(d)] for d in issued["digits"]))
        assert issued["expires_at"] - issued["issued_at"] == challenges.CHALLENGE_SECONDS
        made = alice.create_cameo("astro", media["person"], challenge=issued["id"], audio=media["voice"])
        assert made["owner"] == "alice" and made["verified"] is False and made["has_voice"]
        assert "no speech-recognition model" in made["verification"]
        with pytest.raises(APIError) as caught:
            alice.create_cameo("astro2", media["person"], challenge=issued["id"])
        assert (caught.value.status, caught.value.code, caught.value.param) == (409, "challenge_used", "challenge")
        with pytest.raises(APIError) as caught:
            alice.create_cameo("astro3", media["person"], permission="everyone")
        assert (caught.value.status, caught.value.code) == (403, "cameo_widen_unverified")
    finally:
        server.stop()
    assert CameoStore().get("astro").verification["challenge"]["id"] == issued["id"]


def test_comfyui_capture_takes_a_challenge(media, monkeypatch):
    from test_comfyui import NODE_FOLDER, import_like_comfyui

    from kinema.media.files import read_mp4

    nodes = import_like_comfyui(NODE_FOLDER)
    cameo_logic = importlib.import_module(f"{nodes.__name__}.cameo_logic")
    monkeypatch.setenv("KINEMA_USER", "alice")
    frames, fps, _, _, _ = read_mp4(media["person"])
    issued = challenges.issue("alice")
    handle, _, report = cameo_logic.capture_cameo("astro", frames, fps, challenge=issued.id)
    assert "unverified (only you may use it)" in report
    assert CameoStore().get("astro").verification["challenge"]["id"] == issued.id
    with pytest.raises(ChallengeError, match="already used"):
        cameo_logic.capture_cameo("astro2", frames, fps, challenge=issued.id)


# ---------------------------------------------------------------------------------- unverified cameos


def test_an_unverified_cameo_is_its_owners_alone(media, captured, tmp_path):
    store = CameoStore()
    with pytest.raises(CameoNotAllowedError) as caught:
        make_cameo("astro", "alice", media["person"], permission="everyone", embedder=None)
    assert caught.value.reason == "widen_unverified" and "kinema cameo challenge" in str(caught.value)
    made, _ = make_cameo("astro", "alice", media["person"], embedder=None)
    assert not made.verified and made.public()["verification"] == "captured without a challenge"
    for widen in (
        lambda: store.allow("astro", "alice", permission="everyone"),
        lambda: store.allow("astro", "alice", add_users=("bob",)),
    ):
        with pytest.raises(CameoNotAllowedError) as caught:
            widen()
        assert caught.value.reason == "widen_unverified"
    store.allow("astro", "alice", expires="30d")  # what does not widen it is still the owner's to change

    with pytest.raises(CameoNotAllowedError) as caught:
        cameo_lib.prepare(GenerationRequest("x", cameos=("astro",), user="bob", backend="tiny-ltx2", **SMALL))
    assert caught.value.reason == "not_allowed"
    clip = kinema.generate(GenerationRequest("x", cameos=("astro",), user="alice", backend="tiny-ltx2", **SMALL))
    # The clip's provenance says the person in it was not verified.
    assert clip.metadata["cameo_consent"] == {"astro": "unverified"}
    path = clip.save(tmp_path / "clip.mp4")
    from kinema.media import provenance

    report = provenance.verify(path)
    assert report.generation["cameo_consent"] == {"astro": "unverified"}
    assert "cameos: astro (unverified)" in report.lines()


def test_existing_cameos_become_unverified_and_widened_ones_are_flagged(captured, monkeypatch):
    """A record from before verification: no verification entry. Its 'everyone' is kept, but on hold."""
    from click.testing import CliRunner

    from kinema.cli import cli

    store = CameoStore()
    made = store.create("astro", "alice", captured, verification={"status": "verified"})
    store.allow("astro", "alice", permission="everyone")
    record = json.loads((made.directory / cameo_lib.RECORD_FILE).read_text())["record"]
    del record["verification"]
    store._write_record(made.directory, record)  # as an older kinema wrote it, signed

    old = store.get("astro")
    assert not old.verified and old.permission == "everyone" and old.on_hold
    assert old.public()["verification"] == cameo_lib.UNVERIFIED_BEFORE
    allowed, reason, why = old.may_use("bob")
    assert (allowed, reason) == (False, "unverified") and "only its owner (alice)" in why
    assert old.may_use("alice")[0]
    assert [row["name"] for row in store.list("bob")] == []

    monkeypatch.setenv("KINEMA_USER", "alice")
    listed = CliRunner().invoke(cli, ["cameo", "list"]).output
    assert "astro (owner alice, voice, unverified): everyone" in listed
    assert "on hold: only you may use it until it is verified; to verify it, run `kinema cameo challenge`" in listed
    assert "kinema cameo create astro --replace" in listed


def test_doctor_says_how_to_turn_verification_on():
    from click.testing import CliRunner

    from kinema.cli import cli

    out = CliRunner().invoke(cli, ["doctor"]).output
    line = next(row for row in out.splitlines() if "cameo verification" in row)
    assert line.startswith("!! ") and "kinema models pull openai/whisper-base.en" in line


# ---------------------------------------------------------------------------------- takedown


def test_the_person_shown_takes_a_clip_down(captured, keys, tmp_path):
    """alice's cameo, in bob's video and bob's storyboard film, on a server with keys: alice takes one down."""
    from cameo_helpers import VERIFIED
    from fastapi.testclient import TestClient
    from polling import wait_final

    from kinema.server.app import create_app
    from kinema.storyboard.cache import ShotCache

    store = CameoStore()
    store.create("astro", "alice", captured, verification=VERIFIED)
    store.allow("astro", "alice", add_users=("bob",))
    bob, alice, eve = keys["bob"], keys["alice"], keys["eve"]
    master = {"Authorization": "Bearer master-key-0123456789"}
    app = create_app(api_key="master-key-0123456789", default_backend="tiny-ltx2")
    with TestClient(app, base_url="http://127.0.0.1") as client:
        video = client.post("/v1/videos", headers=bob, json={"prompt": "astro waves", "cameos": ["astro"], **API_SMALL})
        assert video.status_code == 200, video.text
        board = {"backend": "tiny-ltx2", "shots": [{"prompt": "astro dances", "seconds": 0.25, "cameos": ["astro"]}]}
        film = client.post("/v1/storyboards", headers=bob, json={"storyboard": board, "size": "32x32", "steps": 2})
        assert film.status_code == 200, film.text
        for made in (video.json(), film.json()):
            assert wait_final(client, made["id"], headers=bob)["status"] == "completed"
        video_id, film_id = video.json()["id"], film.json()["id"]
        cache = ShotCache()
        assert len(list(cache.folder.glob("*.npz"))) == 1  # the film's shot, kept for the next take

        # alice sees every video made with her cameo, whoever made it; nobody else may list them.
        listed = client.get("/v1/cameos/astro/videos", headers=alice)
        assert listed.status_code == 200, listed.text
        rows = {row["id"]: row for row in listed.json()["data"]}
        assert set(rows) == {video_id, film_id}
        assert {row["made_by"] for row in rows.values()} == {"bob"} and rows[video_id]["prompt"] == "astro waves"
        assert client.get("/v1/cameos/astro/videos", headers=bob).json()["error"]["code"] == "cameo_not_owner"
        refused = client.post("/v1/cameos/astro/takedowns", headers=eve, json={"video": film_id})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "cameo_not_owner"
        elsewhere = client.post("/v1/cameos/astro/takedowns", headers=alice, json={"video": "video_" + "0" * 32})
        assert elsewhere.status_code == 409 and elsewhere.json()["error"]["code"] == "not_made_with_cameo"

        reason = "I never agreed to dance"
        done = client.post("/v1/cameos/astro/takedowns", headers=alice, json={"video": film_id, "reason": reason})
        assert done.status_code == 200, done.text
        assert done.json()["shots_purged"] == 1 and done.json()["made_by"] == "bob"
        assert list(cache.folder.glob("*.npz")) == []
        again = client.post("/v1/cameos/astro/takedowns", headers=alice, json={"video": film_id})
        assert again.status_code == 409

        # Its maker (and the server's owner, who sees every job) is told why, with 410; to anyone else it is gone.
        for headers in (bob, master):
            for method, path, body in (
                ("GET", f"/v1/videos/{film_id}", None),
                ("GET", f"/v1/videos/{film_id}/content", None),
                ("POST", f"/v1/videos/{film_id}/remix", {"prompt": "astro dances more"}),
                ("POST", f"/v1/videos/{film_id}/extend", {"prompt": "astro bows", "seconds": 0.25}),
            ):
                gone = client.request(method, path, headers=headers, json=body)
                assert gone.status_code == 410, (path, gone.text)
                assert gone.json()["error"]["code"] == "taken_down" and reason in gone.json()["error"]["message"]
        edit = client.post("/v1/videos/edits", headers=bob, json={"prompt": "x", "video": {"id": film_id}})
        assert edit.status_code == 410 and edit.json()["error"]["code"] == "taken_down"
        assert client.get(f"/v1/videos/{film_id}", headers=eve).status_code == 404
        assert film_id not in {v["id"] for v in client.get("/v1/videos", headers=bob).json()["data"]}
        # The other video is untouched.
        assert client.get(f"/v1/videos/{video_id}/content", headers=bob).status_code == 200

        rows = {row["id"]: row for row in client.get("/v1/cameos/astro/videos", headers=alice).json()["data"]}
        assert rows[film_id]["status"] == "taken_down" and rows[film_id]["taken_down"]["reason"] == reason
        assert rows[video_id]["status"] == "completed"
        uses = client.get("/v1/cameos/astro/uses", headers=alice).json()["data"]
        assert [u["taken_down"][0]["reason"] for u in uses if u.get("taken_down")] == [reason]

    # The takedown is a line of the hash-chained use log: editing it refuses the cameo like any other edit.
    log = store.path("astro") / cameo_lib.USES_FILE
    lines = [json.loads(line)["entry"] for line in log.read_text().splitlines()]
    takedown = next(line for line in lines if "takedown" in line)
    assert takedown == {**takedown, "takedown": film_id, "by": "alice", "maker": "bob", "reason": reason}
    log.write_text(log.read_text().replace(reason, "fine by me"))
    with pytest.raises(cameo_lib.CameoTamperedError):
        store.uses("astro", "alice")
