"""Every ``client.videos`` method of the pinned openai SDK against the in-process server (issue 20).

The SDK's own types parse every answer; the JSON forms the SDK cannot send (an input reference or a video
given as an object) go as raw POSTs. Jobs run the real embedded ``tiny`` backend at toy sizes.
"""

from __future__ import annotations

import json

import pytest
from cameo_helpers import mark_verified

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),  # the openai SDK marks videos.* deprecated
    pytest.mark.usefixtures("one_torch_thread"),
]
SMALL = {"size": "32x32", "seconds": "0.4"}
FAST = {"steps": 2, "seed": 3}
MISSING = "video_" + "0" * 32


def sdk_for(client, key: str = "-"):
    import openai

    return openai.OpenAI(base_url="http://127.0.0.1/v1", api_key=key, http_client=client, max_retries=0)


@pytest.fixture
def queue_only(kinema_env):
    """The server with its queue stopped: what a request becomes, without making it."""
    from fastapi.testclient import TestClient

    from kinema.server.app import create_app

    # The random-weight tiny LTX-2 as the default: it makes any shape, small (the demo world makes 64x64 only).
    app = create_app(api_key=None, start_workers=False, default_backend="tiny-ltx2")
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield client


# --------------------------------------------------------------------------- errors


def test_errors_come_in_openais_shape_and_the_sdk_raises_its_types(queue_only):
    import openai

    sdk = sdk_for(queue_only)
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.videos.retrieve(MISSING)
    assert caught.value.body == {
        "message": f"no video with id {MISSING!r}",
        "type": "invalid_request_error",
        "param": "video_id",
        "code": "not_found",
    }
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.videos.create(prompt="x", size="32x32", extra_body={"steps": 0})
    assert caught.value.body["param"] == "steps" and caught.value.code == "invalid_value"
    video = sdk.videos.create(prompt="x", model="tiny-ltx2", **SMALL)
    with pytest.raises(openai.ConflictError) as caught:  # not finished yet
        sdk.videos.download_content(video.id)
    assert caught.value.code == "not_ready" and "queued" in caught.value.message


# --------------------------------------------------------------------------- the hosted API's values


def test_sora_names_sizes_and_seconds_are_made_as_the_backend_makes_them(queue_only, kinema_env):
    sdk = sdk_for(queue_only)
    video = sdk.videos.create(prompt="waves at dawn", model="sora-2", size="1280x720", seconds="4")
    # No LTX-2 or Wan here, so sora-2 runs the server's default backend, here tiny-ltx2: small pictures.
    assert (video.model, video.size, video.seconds) == ("sora-2", "96x64", "4.04167")
    info = video.model_extra["kinema"]
    assert info["backend"] == "tiny-ltx2" and info["tier"] == "standard"
    assert info["notes"][:2] == [
        "sora-2 runs tiny-ltx2 at tier standard: the server's default backend",
        "size 1280x720 made as 96x64: tiny-ltx2 is a demo that makes small pictures; same shape",
    ]
    portrait = sdk.videos.create(prompt="x", model="sora-2-pro-2025-10-06", size="1024x1792", seconds="12")
    assert portrait.size == "64x96" and float(portrait.seconds) == pytest.approx(12, abs=0.05)
    assert portrait.model_extra["kinema"]["tier"] == "final"
    # Told otherwise: the data directory's openai_models.json, and kinema's own fields (extra_body) win.
    (kinema_env / "openai_models.json").write_text(json.dumps({"sora-2": {"backend": "tiny-wan", "tier": "draft"}}))
    wan = sdk.videos.create(prompt="x", model="sora-2", size="720x1280", seconds="8")
    assert wan.model_extra["kinema"]["backend"] == "tiny-wan" and wan.model_extra["kinema"]["tier"] == "draft"
    assert wan.model_extra["kinema"]["notes"][0] == "sora-2 runs tiny-wan at tier draft: as openai_models.json says"
    told = sdk.videos.create(prompt="x", model="sora-2", extra_body={"backend": "tiny", "tier": "final"})
    assert told.model_extra["kinema"]["backend"] == "tiny" and told.model_extra["kinema"]["tier"] == "final"
    (kinema_env / "openai_models.json").write_text(json.dumps({"sora-2": {"backend": "nope"}}))
    refused = queue_only.post("/v1/videos", json={"prompt": "x", "model": "sora-2"})
    assert refused.status_code == 400 and "openai_models.json" in refused.json()["error"]["message"]


def test_a_length_beyond_the_backend_is_its_longest():
    from kinema.engine import get_backends
    from kinema.server.hosted import fit_seconds, fit_size

    wan = get_backends()["wan"]  # 121 frames at most
    assert fit_seconds(wan, 12.0, 24.0) == (5.0, "12 s made as 5 s: the longest wan makes in one generation")
    assert fit_seconds(wan, 4.0, 24.0) == (4.0, None)
    assert fit_size(get_backends()["ltx2"], 1280, 720) == (1280, 720, None)  # within its pixels: as asked
    assert fit_size(wan, 1280, 720)[:2] == (1280, 704)  # 1280x720 is a little over Wan 2.2's 1280x704
    width, height, note = fit_size(wan, 1792, 1024)
    assert width * height <= 1280 * 704 and abs(width / height - 1.75) < 0.1 and "at most 901,120 pixels" in note


# --------------------------------------------------------------------------- every method, one source video


def png_bytes(width: int = 32, height: int = 32) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), (200, 40, 40), np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_every_videos_method_of_the_sdk(app_client, tmp_path):
    import base64

    import openai
    from openai.types import Video, VideoDeleteResponse
    from polling import wait_final

    from kinema.media.files import probe

    sdk = sdk_for(app_client)
    source = sdk.videos.create_and_poll(
        prompt="a red kite",
        model="tiny-ltx2",
        input_reference=("first.png", png_bytes(), "image/png"),
        extra_body=FAST,
        **SMALL,
    )
    assert isinstance(source, Video) and source.status == "completed" and source.model_extra["kinema"]["has_image"]
    assert sdk.videos.retrieve(source.id).id == source.id
    original = sdk.videos.download_content(source.id).read()
    assert original[4:8] == b"ftyp"
    assert sdk.videos.download_content(source.id, variant="thumbnail").read()[:4] == b"\x89PNG"
    assert sdk.videos.download_content(source.id, variant="spritesheet").read()[:2] == b"\xff\xd8"

    # The JSON forms the SDK refuses client-side: a data URL as the first frame, a video by id.
    data_url = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
    by_url = app_client.post(
        "/v1/videos", json={"prompt": "a blue kite", "input_reference": {"image_url": data_url}, **SMALL, **FAST}
    )
    assert by_url.status_code == 200 and by_url.json()["kinema"]["has_image"], by_url.text
    # Or an image uploaded once with the SDK's files.create, named by its file_id (tests/test_files_api.py).
    uploaded = sdk.files.create(file=("first.png", png_bytes(), "image/png"), purpose="vision")
    by_file = app_client.post(
        "/v1/videos", json={"prompt": "a kite", "input_reference": {"file_id": uploaded.id}, **SMALL, **FAST}
    )
    assert by_file.status_code == 200 and by_file.json()["kinema"]["has_image"], by_file.text

    remixed = sdk.videos.remix(source.id, prompt="a paper kite", extra_body=FAST)
    edited = sdk.videos.edit(
        prompt="a green kite", video=("kite.mp4", original, "video/mp4"), extra_body={**FAST, "model": "tiny-ltx2"}
    )
    edited_by_id = app_client.post(
        "/v1/videos/edits", json={"prompt": "a yellow kite", "video": {"id": source.id}, **FAST}
    ).json()
    extended = sdk.videos.extend(
        prompt="the kite climbs",
        seconds="4",
        video=("kite.mp4", original, "video/mp4"),
        extra_body={**FAST, "model": "tiny-ltx2"},  # an upload is made on the server's default unless told
    )
    extended_by_id = app_client.post(
        "/v1/videos/extensions", json={"prompt": "it falls", "seconds": "0.25", "video": {"id": source.id}, **FAST}
    ).json()
    assert remixed.remixed_from_video_id == source.id == edited_by_id["remixed_from_video_id"]
    assert edited.remixed_from_video_id is None and edited.model_extra["kinema"]["parent"] is None  # an upload
    # An extension's seconds are the whole clip's: 9 frames + 4 s at 24 fps.
    assert extended.seconds == "4.375" and extended_by_id["seconds"] == "0.625"
    made = {}
    for video_id in (by_url.json()["id"], remixed.id, edited.id, edited_by_id["id"], extended.id, extended_by_id["id"]):
        done = wait_final(app_client, video_id, timeout=300.0)
        assert done["status"] == "completed", done["error"]
        path = tmp_path / f"{video_id}.mp4"
        sdk.videos.download_content(video_id).write_to_file(path)
        made[video_id] = probe(path)
    for video_id in (remixed.id, edited.id, edited_by_id["id"]):
        assert made[video_id].frame_count == 9
    longer = made[extended.id]
    assert longer.frame_count == 9 + 96 and abs(longer.audio_duration - longer.video_duration) < 1e-3
    assert json.loads(longer.metadata["kinema"])["kind"] == "extend"

    page = sdk.videos.list(limit=2, order="asc")
    assert [v.id for v in page.data] == [source.id, by_url.json()["id"]] and page.has_more
    rest = sdk.videos.list(after=page.data[-1].id, limit=100, order="asc")
    assert len(rest.data) == 6 and not rest.has_more  # the 8 made here, after the first 2
    assert [v.id for v in sdk.videos.list(order="desc", limit=1).data] == [extended_by_id["id"]]

    deleted = sdk.videos.delete(source.id)
    assert isinstance(deleted, VideoDeleteResponse) and deleted.deleted and deleted.id == source.id
    with pytest.raises(openai.NotFoundError):
        sdk.videos.retrieve(source.id)
    gone = app_client.post("/v1/videos/edits", json={"prompt": "x", "video": {"id": source.id}})
    assert gone.status_code == 404 and gone.json()["error"]["param"] == "video"


def test_edits_and_extensions_refuse_what_they_cannot_use(queue_only):
    import openai

    sdk = sdk_for(queue_only)
    for path in ("/v1/videos/edits", "/v1/videos/extensions"):
        body = {"prompt": "x", "seconds": "4"} if path.endswith("extensions") else {"prompt": "x"}
        none = queue_only.post(path, json=body)
        assert none.status_code == 400 and none.json()["error"]["code"] == "missing_required_parameter"
        unknown = queue_only.post(path, json={**body, "video": {"id": MISSING}})
        assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "video"
        junk = queue_only.post(path, data=body, files={"video": ("a.mp4", b"not a video", "video/mp4")})
        assert junk.status_code == 400 and junk.json()["error"]["code"] == "invalid_video"
    waiting = sdk.videos.create(prompt="x", model="tiny-ltx2", **SMALL)
    with pytest.raises(openai.ConflictError) as caught:  # not finished yet
        sdk.videos.remix(waiting.id, prompt="y")
    assert caught.value.code == "video_not_ready"
    early = queue_only.post("/v1/videos/extensions", json={"prompt": "y", "seconds": "4", "video": {"id": waiting.id}})
    assert early.status_code == 409 and early.json()["error"]["code"] == "video_not_ready"


def test_another_users_videos_do_not_exist_for_you(kinema_env):
    import openai
    from fastapi.testclient import TestClient

    from kinema.server.app import create_app
    from kinema.server.users import add_key

    keys = {user: add_key(user) for user in ("alice", "bob")}
    with TestClient(create_app(api_key="master-key-0123456789", start_workers=False), base_url="http://127.0.0.1") as c:
        alice, bob = sdk_for(c, keys["alice"]), sdk_for(c, keys["bob"])
        video = alice.videos.create(prompt="alice's", model="tiny-ltx2", **SMALL)
        for call in (
            lambda: bob.videos.retrieve(video.id),
            lambda: bob.videos.download_content(video.id),
            lambda: bob.videos.remix(video.id, prompt="mine now"),
            lambda: bob.videos.delete(video.id),
        ):
            with pytest.raises(openai.NotFoundError):
                call()
        stolen = c.post(
            "/v1/videos/edits",
            headers={"Authorization": f"Bearer {keys['bob']}"},
            json={"prompt": "x", "video": {"id": video.id}},
        )
        assert stolen.status_code == 404
        assert bob.videos.list().data == [] and [v.id for v in alice.videos.list().data] == [video.id]
        with pytest.raises(openai.AuthenticationError):
            sdk_for(c, "wrong").videos.list()


# --------------------------------------------------------------------------- characters (cameos)


def test_characters_are_cameos_owned_by_their_maker(kinema_env, tmp_path):
    import openai

    pytest.importorskip("cv2")
    skimage_data = pytest.importorskip("skimage.data")
    from fractions import Fraction

    from fastapi.testclient import TestClient
    from test_cameos import moving_crop

    from kinema.media.files import write_mp4
    from kinema.server.app import create_app
    from kinema.server.users import add_key

    person = write_mp4(tmp_path / "person.mp4", moving_crop(skimage_data.astronaut()), Fraction(10)).read_bytes()
    coffee = moving_crop(skimage_data.coffee(), center=(300, 200))
    noface = write_mp4(tmp_path / "noface.mp4", coffee, Fraction(10)).read_bytes()
    keys = {user: add_key(user) for user in ("alice", "bob")}
    with TestClient(create_app(api_key="master-key-0123456789", start_workers=False), base_url="http://127.0.0.1") as c:
        alice, bob = sdk_for(c, keys["alice"]), sdk_for(c, keys["bob"])
        made = alice.videos.create_character(name="Astro Naut", video=("me.mp4", person, "video/mp4"))
        assert (made.id, made.name) == ("char_astro-naut", "astro-naut") and made.created_at > 0
        assert alice.videos.get_character(made.id).name == "astro-naut"
        with pytest.raises(openai.NotFoundError):  # only_me: bob does not see it
            bob.videos.get_character(made.id)
        with pytest.raises(openai.BadRequestError) as caught:
            alice.videos.create_character(name="cup", video=("cup.mp4", noface, "video/mp4"))
        assert caught.value.code == "cameo_no_face" and caught.value.body["param"] == "video"
        with pytest.raises(openai.ConflictError):  # the name is taken
            alice.videos.create_character(name="astro naut", video=("me.mp4", person, "video/mp4"))

        # Used by id (extra_body) or by @name in the prompt; unknown: 400 naming it; not allowed: 403.
        by_id = alice.videos.create(
            prompt="surfing", model="tiny-ltx2", extra_body={"characters": [{"id": made.id}]}, **SMALL
        )
        by_name = alice.videos.create(prompt="@astro-naut surfing at dawn", model="tiny-ltx2", **SMALL)
        assert c.get(f"/v1/videos/{by_id.id}", headers={"Authorization": f"Bearer {keys['alice']}"}).status_code == 200
        for video in (by_id, by_name):
            record = c.app.state.manager.get(video.id)
            assert record["request"]["cameos"] == ["char_astro-naut"]  # by id: names are per user
        with pytest.raises(openai.BadRequestError) as caught:
            alice.videos.create(prompt="@nobody waves", model="tiny-ltx2", **SMALL)
        assert caught.value.body["param"] == "prompt" and "'@nobody'" in caught.value.message
        with pytest.raises(openai.BadRequestError):  # bob does not even learn it exists
            bob.videos.create(prompt="@astro-naut waves", model="tiny-ltx2", **SMALL)
        owner = {"Authorization": f"Bearer {keys['alice']}"}
        assert made.model_extra["kinema"]["verified"] is False  # no challenge: alice's alone until verified
        mark_verified("astro-naut")
        c.post("/v1/cameos/astro-naut/permissions", headers=owner, json={"permission": "listed", "add_users": ["eve"]})
        with pytest.raises(openai.PermissionDeniedError) as caught:
            bob.videos.create(prompt="@astro-naut waves", model="tiny-ltx2", **SMALL)
        assert caught.value.code == "cameo_not_allowed"
        c.post("/v1/cameos/astro-naut/permissions", headers=owner, json={"permission": "everyone"})
        assert bob.videos.get_character(made.id).id == made.id
        assert bob.videos.create(prompt="@astro-naut waves", model="tiny-ltx2", **SMALL).status == "queued"
