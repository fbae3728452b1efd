"""The person shown takes a clip down from the command line and the stdlib client (issue 24), against a keyed
server on loopback; and the schema says which routes answer 410 ``taken_down``."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("cv2")
pytest.importorskip("skimage.data")

from cameo_helpers import VERIFIED  # noqa: E402
from servers import ThreadServer  # noqa: E402
from test_cameos import capture_person, make_media  # noqa: E402

from kinema.cameo.store import CameoStore  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
MASTER = "master-key-0123456789"


@pytest.fixture(scope="module")
def captured(tmp_path_factory):
    return capture_person(make_media(tmp_path_factory.mktemp("takedown-media")))


def test_kinema_cameo_takedown_takes_a_clip_down(kinema_env, captured, monkeypatch):
    from click.testing import CliRunner

    from kinema.cli import cli
    from kinema.client import APIError, Client
    from kinema.server.app import create_app
    from kinema.server.users import add_key

    keys = {user: add_key(user) for user in ("alice", "bob")}
    store = CameoStore()
    store.create("astro", "alice", captured, verification=VERIFIED)
    store.allow("astro", "alice", add_users=("bob",))
    server = ThreadServer(create_app(api_key=MASTER, default_backend="tiny-ltx2"))
    try:
        bob = Client(server.url, api_key=keys["bob"])
        job = bob.submit("astro waves", cameos=["astro"], size="32x32", seconds=0.375, fps=24, steps=2, seed=1)
        made = bob.wait(job["id"], timeout=600)
        assert made["status"] == "completed"

        monkeypatch.setenv("KINEMA_URL", server.url)
        monkeypatch.setenv("KINEMA_API_KEY", keys["alice"])
        listed = CliRunner().invoke(cli, ["cameo", "clips", "astro", "--json"])
        assert listed.exit_code == 0, listed.output
        assert [(v["id"], v["made_by"], v["status"]) for v in json.loads(listed.output)] == [
            (made["id"], "bob", "completed")
        ]
        shown = CliRunner().invoke(cli, ["cameo", "clips", "astro"]).output
        assert made["id"] in shown and "by bob" in shown and "'astro waves'" in shown

        # Only the cameo's owner: bob's key is told so, as a CLI error rather than a traceback.
        refused = CliRunner().invoke(cli, ["cameo", "takedown", "astro", made["id"], "--api-key", keys["bob"]])
        assert refused.exit_code == 1 and "only 'alice' (the owner)" in refused.output

        done = CliRunner().invoke(cli, ["cameo", "takedown", "astro", made["id"], "--reason", "I never agreed"])
        assert done.exit_code == 0, done.output
        assert f"took down {made['id']} (made by bob): I never agreed" in done.output

        with pytest.raises(APIError) as gone:  # its maker is told why
            bob.get(made["id"])
        assert gone.value.status == 410 and gone.value.code == "taken_down" and "I never agreed" in str(gone.value)
        with pytest.raises(APIError) as again:
            Client(server.url, api_key=keys["alice"]).take_down("astro", made["id"])
        assert again.value.code == "already_taken_down"
        after = Client(server.url, api_key=keys["alice"]).cameo_videos("astro")
        assert after[0]["status"] == "taken_down" and after[0]["taken_down"]["reason"] == "I never agreed"
        assert "taken down: I never agreed" in CliRunner().invoke(cli, ["cameo", "clips", "astro"]).output
    finally:
        server.stop()


def test_every_route_that_names_a_video_declares_410(kinema_env):
    from kinema.server.app import create_app

    paths = create_app(api_key=None, start_workers=False).openapi()["paths"]
    named = {
        (method, path)
        for path, operations in paths.items()
        for method in operations
        if "{video_id}" in path or path in ("/v1/videos/edits", "/v1/videos/extensions")
    }
    assert len(named) >= 9
    for method, path in sorted(named):
        declared = paths[path][method]["responses"].get("410")
        assert declared and "taken_down" in declared["description"], (method, path)
        assert declared["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
