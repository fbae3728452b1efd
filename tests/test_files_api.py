"""OpenAI's Files API as kinema keeps it: images uploaded once (``POST /v1/files``), used as ``input_reference``
by ``file_id``, each its uploader's (issue 20). The pinned openai SDK's ``client.files`` drives it; the JSON
body the SDK cannot send for ``videos.create`` (an ``input_reference`` object) goes as a raw POST."""

from __future__ import annotations

import pytest
from test_openai_parity import png_bytes, sdk_for

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the openai SDK marks videos.* deprecated
SMALL = {"size": "32x32", "seconds": "0.4"}


def test_a_file_id_names_an_image_its_uploader_kept(kinema_env):
    import openai
    from fastapi.testclient import TestClient
    from openai.types import FileObject

    from kinema.server.app import create_app
    from kinema.server.users import add_key

    keys = {user: add_key(user) for user in ("alice", "bob")}
    heads = {user: {"Authorization": f"Bearer {key}"} for user, key in keys.items()}
    app = create_app(api_key="master-key-0123456789", start_workers=False, default_backend="tiny-ltx2")
    with TestClient(app, base_url="http://127.0.0.1") as c:
        alice, bob = sdk_for(c, keys["alice"]), sdk_for(c, keys["bob"])
        kept = alice.files.create(file=("first.png", png_bytes(48, 32), "image/png"), purpose="vision")
        assert isinstance(kept, FileObject) and kept.id.startswith("file-") and kept.purpose == "vision"
        assert (kept.filename, kept.status, kept.bytes) == ("first.png", "processed", len(png_bytes(48, 32)))
        assert alice.files.retrieve(kept.id).id == kept.id
        assert [f.id for f in alice.files.list()] == [kept.id] and list(bob.files.list()) == []
        assert alice.files.content(kept.id).read() == png_bytes(48, 32)

        made = c.post(
            "/v1/videos",
            headers=heads["alice"],
            json={"prompt": "a kite", "input_reference": {"file_id": kept.id}, **SMALL},
        )
        assert made.status_code == 200 and made.json()["kinema"]["has_image"], made.text
        image = app.state.manager.directory / made.json()["id"]
        assert any(image.iterdir())  # the first frame is the job's own copy, not a link to the file

        # Another user's file does not exist for bob, by any route; a malformed id is the same 404.
        stolen = c.post(
            "/v1/videos", headers=heads["bob"], json={"prompt": "x", "input_reference": {"file_id": kept.id}, **SMALL}
        )
        assert stolen.status_code == 404 and stolen.json()["error"]["param"] == "input_reference.file_id"
        for call in (lambda: bob.files.retrieve(kept.id), lambda: bob.files.delete(kept.id)):
            with pytest.raises(openai.NotFoundError):
                call()
        assert c.get("/v1/files/file-nope", headers=heads["alice"]).status_code == 404

        # Only images an input_reference could be, for that purpose; one reference at a time.
        with pytest.raises(openai.BadRequestError) as caught:
            alice.files.create(file=("data.jsonl", b'{"a": 1}\n', "application/jsonl"), purpose="vision")
        assert caught.value.body["param"] == "file"
        with pytest.raises(openai.BadRequestError) as caught:
            alice.files.create(file=("first.png", png_bytes(), "image/png"), purpose="fine-tune")
        assert caught.value.body["param"] == "purpose" and "vision" in caught.value.message
        both = c.post(
            "/v1/videos",
            headers=heads["alice"],
            json={"prompt": "x", "input_reference": {"file_id": kept.id, "image_url": "data:image/png;base64,AA=="}},
        )
        assert both.status_code == 400 and "input_reference" in both.json()["error"]["param"]

        assert alice.files.delete(kept.id).deleted is True
        gone = c.post(
            "/v1/videos", headers=heads["alice"], json={"prompt": "x", "input_reference": {"file_id": kept.id}, **SMALL}
        )
        assert gone.status_code == 404
        # The video made from it keeps its first frame.
        assert c.get(f"/v1/videos/{made.json()['id']}", headers=heads["alice"]).json()["kinema"]["has_image"]
