"""A cameo's name is unique per user; its id is global (issue 20: "two views of one record").

Two users may each have a cameo called ``astro``. A name means the asker's own cameo first, else the one
cameo of that name others let them use; several such is a 400 that lists their ids (``char_...``), which
name one for everyone. Records made before ids (whose id is their name) keep working.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("cv2")
pytest.importorskip("skimage.data")

from cameo_helpers import VERIFIED  # noqa: E402
from test_cameos import SMALL, capture_person, make_media  # noqa: E402

import kinema  # noqa: E402
from kinema import GenerationRequest  # noqa: E402
from kinema.cameo import store as cameo_lib  # noqa: E402
from kinema.cameo.store import CameoAmbiguousError, CameoError, CameoNotAllowedError, CameoStore  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),  # the openai SDK marks videos.* deprecated
    pytest.mark.usefixtures("one_torch_thread"),
]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    return make_media(tmp_path_factory.mktemp("cameo-names-media"))


@pytest.fixture(scope="module")
def captured(media):
    return capture_person(media)


def test_two_users_each_have_their_own_cameo_of_one_name(kinema_env, captured):
    store = CameoStore()
    alices = store.create("astro", "alice", captured, verification=VERIFIED)
    bobs = store.create("astro", "bob", captured, verification=VERIFIED)
    assert (alices.name, bobs.name) == ("astro", "astro")
    assert alices.id == "astro" and bobs.id.startswith("astro-") and bobs.id != alices.id
    assert bobs.public()["character_id"] == f"char_{bobs.id}"
    with pytest.raises(CameoError, match="you already have a cameo named 'astro'"):
        store.create("astro", "bob", captured, verification=VERIFIED)
    with pytest.raises(kinema.InvalidRequestError, match="marks a cameo's id"):
        store.create("char_x", "bob", captured)

    # Each owner's name means their own; an owner's commands act on their own.
    assert store.resolve("astro", "alice").id == alices.id and store.resolve("astro", "bob").id == bobs.id
    store.allow("astro", "bob", permission="everyone")
    assert store.get(bobs.id).permission == "everyone" and store.get(alices.id).permission == "only_me"
    # carol may use bob's only: the name is his; alice's stays hers, and by id it is refused with the reason.
    assert store.authorize("astro", "carol").id == bobs.id
    with pytest.raises(CameoNotAllowedError):
        store.authorize(f"char_{alices.id}", "carol")
    # Both shared with carol: the name is ambiguous, and the error names each by id.
    store.allow("astro", "alice", permission="everyone")
    with pytest.raises(CameoAmbiguousError) as ambiguous:
        store.authorize("astro", "carol")
    assert f"char_{alices.id}" in str(ambiguous.value) and f"char_{bobs.id}" in str(ambiguous.value)
    assert store.authorize(f"char_{bobs.id}", "carol").id == bobs.id
    assert store.authorize("astro", "alice").id == alices.id  # your own still wins
    listed = {row["character_id"]: row["owner"] for row in store.list("carol")}
    assert listed == {f"char_{alices.id}": "alice", f"char_{bobs.id}": "bob"}

    # A clip by bob with "astro" is made with his cameo, logged with his cameo only, and says so by id.
    clip = kinema.generate(
        GenerationRequest("astro waves", cameos=("astro",), user="bob", backend="tiny-ltx2", **SMALL)
    )
    assert clip.metadata["cameos"] == [bobs.id]
    assert [u["user"] for u in store.uses("astro", "bob")] == ["bob"] and store.uses("astro", "alice") == []
    # Named twice (by name and by id) it is one cameo.
    both = GenerationRequest("x", cameos=("astro", f"char_{bobs.id}"), user="bob", backend="tiny-ltx2", **SMALL)
    assert [c.id for c in cameo_lib.prepare(both).cameos] == [bobs.id]
    store.delete("astro", "bob")
    assert store.names() == [alices.id]


def test_a_cameo_recorded_before_ids_keeps_working(kinema_env, captured):
    store = CameoStore()
    made = store.create("astro", "alice", captured, verification=VERIFIED)
    path = store.path("astro") / cameo_lib.RECORD_FILE
    record = json.loads(path.read_text())["record"]
    del record["id"]  # as every record written before names were per user
    store._write_record(store.path("astro"), record)
    old = store.get("astro")
    assert old.id == "astro" and old.name == "astro" and old == made
    assert store.resolve("astro", "alice").id == "astro" and store.resolve("char_astro", "alice").id == "astro"
    # A second user's "astro" is a new record beside it, not a clash.
    assert store.create("astro", "bob", captured, verification=VERIFIED).id != "astro"


def test_the_server_resolves_names_per_user(kinema_env, media):
    import openai
    from fastapi.testclient import TestClient
    from test_openai_parity import sdk_for

    from kinema.server.app import create_app
    from kinema.server.users import add_key

    person = media["person"].read_bytes()
    keys = {user: add_key(user) for user in ("alice", "bob", "carol")}
    heads = {user: {"Authorization": f"Bearer {key}"} for user, key in keys.items()}
    app = create_app(api_key="master-key-0123456789", start_workers=False, default_backend="tiny-ltx2")
    with TestClient(app, base_url="http://127.0.0.1") as c:
        sdk = {user: sdk_for(c, key) for user, key in keys.items()}
        alices = sdk["alice"].videos.create_character(name="Astro", video=("me.mp4", person, "video/mp4"))
        bobs = sdk["bob"].videos.create_character(name="Astro", video=("me.mp4", person, "video/mp4"))
        assert alices.name == bobs.name == "astro" and alices.id == "char_astro" and bobs.id != alices.id
        assert c.get("/v1/cameos/astro", headers=heads["bob"]).json()["character_id"] == bobs.id

        def cameos_of(video):
            return app.state.manager.get(video.id)["request"]["cameos"]

        # @astro in each user's prompt is their own.
        assert cameos_of(sdk["bob"].videos.create(prompt="@astro waves", size="32x32", seconds="0.4")) == [bobs.id]
        assert cameos_of(sdk["alice"].videos.create(prompt="@astro waves", size="32x32", seconds="0.4")) == [alices.id]
        with pytest.raises(openai.BadRequestError):  # carol: neither is shared with her
            sdk["carol"].videos.create(prompt="@astro waves", size="32x32", seconds="0.4")
        for name in ("astro", bobs.id[len("char_") :]):
            CameoStore()._update(name, CameoStore().get(name).owner, "verify", {"verification": VERIFIED})
        for user in ("alice", "bob"):
            c.post("/v1/cameos/astro/permissions", headers=heads[user], json={"permission": "everyone"})
        with pytest.raises(openai.BadRequestError) as ambiguous:
            sdk["carol"].videos.create(prompt="@astro waves", size="32x32", seconds="0.4")
        assert ambiguous.value.code == "character_ambiguous" and bobs.id in ambiguous.value.message
        by_id = sdk["carol"].videos.create(prompt=f"@{bobs.id} waves", size="32x32", seconds="0.4")
        assert cameos_of(by_id) == [bobs.id]
        extra = sdk["carol"].videos.create(
            prompt="waves", size="32x32", seconds="0.4", extra_body={"characters": [{"id": alices.id}]}
        )
        assert cameos_of(extra) == [alices.id]
        refused = c.post("/v1/videos", headers=heads["carol"], json={"prompt": "x", "cameos": ["astro"]})
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "cameo_ambiguous"
        assert sdk["carol"].videos.get_character(bobs.id).model_extra["kinema"]["owner"] == "bob"
        assert c.get("/v1/cameos/astro", headers=heads["carol"]).status_code == 400
        assert c.get(f"/v1/cameos/{bobs.id}", headers=heads["carol"]).json()["owner"] == "bob"


def test_the_cli_says_the_id_when_it_is_not_the_name(kinema_env, captured, media, monkeypatch):
    from click.testing import CliRunner

    from kinema.cli import cli

    CameoStore().create("astro", "alice", captured, verification=VERIFIED)
    monkeypatch.setenv("KINEMA_USER", "bob")
    made = CliRunner().invoke(cli, ["cameo", "create", "astro", "--video", str(media["person"])])
    assert made.exit_code == 0, made.output
    bobs = CameoStore().own("astro", "bob")
    assert bobs is not None and f"cameo astro (id char_{bobs.id}: another user has one called so):" in made.output
    listed = CliRunner().invoke(cli, ["cameo", "list"]).output
    assert f"astro (owner bob, id char_{bobs.id}," in listed
    shown = CliRunner().invoke(cli, ["cameo", "show", "astro"])
    assert json.loads(shown.output)["character_id"] == f"char_{bobs.id}"
