"""GET /v1/models says each model's licence and whether it is here; POST /v1/models/pulls downloads one.

The Hub is not reachable in tests, so huggingface_hub's snapshot_download is replaced by a stand-in that writes into
``local_dir`` and reports its bytes through the ``tqdm_class`` it is given, as huggingface_hub 2.x does; the test
decides when each part of the download arrives, so progress is seen by polling without any clock.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

LTX = "Lightricks/LTX-2"
LICENCE_FIELDS = {"known", "name", "family", "restricted", "terms", "must_accept", "url", "summary", "accepted"}


class Hub:
    """A stand-in for snapshot_download: half the bytes, then waits for ``go``, then the rest (or fails)."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.half = threading.Event()  # set once half has arrived
        self.go = threading.Event()
        self.fail = False

    def snapshot_download(self, repo_id, *, revision=None, local_dir, allow_patterns=None, tqdm_class=None):
        self.calls.append(repo_id)
        local_dir = Path(local_dir)
        local_dir.mkdir(parents=True, exist_ok=True)
        bar = tqdm_class(total=0, unit="B", name="huggingface_hub.snapshot_download")
        bar.total = 2000
        bar.update(1000)
        self.half.set()
        assert self.go.wait(60), "the test never let the download finish"
        if self.fail:
            raise OSError(f"[Errno 28] No space left on device: '{local_dir / 'weights.safetensors'}'")
        (local_dir / "model_index.json").write_text("{}")
        (local_dir / "weights.safetensors").write_bytes(b"\0" * 8)
        bar.update(1000)
        bar.close()
        return str(local_dir)


@pytest.fixture
def hub(monkeypatch, tmp_path):
    import huggingface_hub

    monkeypatch.setenv("KINEMA_HOME", str(tmp_path / "home"))  # a models folder of its own: pulls write into it
    monkeypatch.setenv("KINEMA_LOAD_PLUGINS", "")
    monkeypatch.delenv("KINEMA_API_KEY", raising=False)
    stand_in = Hub()
    monkeypatch.setattr(huggingface_hub, "snapshot_download", stand_in.snapshot_download)
    yield stand_in
    stand_in.go.set()  # a download a failed test left waiting


def _client(**options):
    from fastapi.testclient import TestClient

    from kinema.server.app import create_app

    return TestClient(create_app(api_key=None, **options), base_url="http://127.0.0.1")


def _rows(client) -> dict:
    return {row["id"]: row for row in client.get("/v1/models").json()["data"]}


def _poll_until(client, model: str, done) -> dict:
    for _ in range(2000):
        pull = client.get(f"/v1/models/pulls/{model}").json()
        if done(pull):
            return pull
        threading.Event().wait(0.01)
    raise AssertionError(f"the pull of {model} never got there: {pull}")


def test_the_model_list_says_each_licence_and_what_is_installed(hub):
    with _client() as client:
        rows = _rows(client)
    ltx2, ltx = rows["ltx2"], rows[LTX]
    assert ltx2["role"] == "backend" and ltx2["installed"] is False and ltx2["requires"] == [LTX]
    assert ltx["role"] == "model" and ltx["backend"] == "ltx2" and ltx["installed"] is False and not ltx["ready"]
    assert set(ltx["licence"]) == LICENCE_FIELDS
    assert ltx["licence"]["name"] == "LTX-2 Community License" and ltx["licence"]["must_accept"] is True
    assert ltx["licence"]["url"] == f"https://huggingface.co/{LTX}" and ltx["licence"]["accepted"] is None
    assert "$10M" in ltx["licence"]["terms"]
    sound = rows["stabilityai/stable-audio-open-1.0"]  # wan's sound pass: pulled, never named in a job
    assert (
        sound["role"] == "component"
        and sound["backend"] in ("wan", "wan-vace")
        and sound["licence"]["restricted"] is True
    )
    assert "stabilityai/stable-audio-open-1.0" in rows["wan"]["requires"]
    wan = rows["Wan-AI/Wan2.2-TI2V-5B-Diffusers"]
    assert wan["licence"]["name"] == "Apache-2.0" and wan["licence"]["must_accept"] is False
    world = rows["tiny"]  # embedded: always here, kinema's licence, no card to read
    assert world["installed"] is True and world["requires"] == []
    assert world["licence"]["family"] == "kinema demo" and world["licence"]["url"] is None
    assert "huggingface" not in world["licence"]["summary"]


def test_a_restricted_licence_must_be_accepted_before_anything_downloads(hub):
    with _client() as client:
        refused = client.post("/v1/models/pulls", json={"model": LTX, "accept_license": False})
        assert refused.status_code == 403
        error = refused.json()["error"]
        assert error["code"] == "licence_not_accepted" and error["param"] == "accept_license"
        assert "LTX-2 Community License" in error["message"] and "accept_license true" in error["message"]
        assert client.post("/v1/models/pulls", json={"model": LTX}).status_code == 400  # acceptance is required
        assert client.get("/v1/models/pulls").json()["data"] == []
    assert hub.calls == []  # no download began


def test_a_pull_shows_its_progress_and_then_the_model_is_installed_with_its_licence_accepted(hub):
    with _client() as client:
        started = client.post("/v1/models/pulls", json={"model": LTX, "accept_license": True})
        assert started.status_code == 202 and started.json()["licence"]["must_accept"] is True
        assert hub.half.wait(60)
        half = _poll_until(client, LTX, lambda pull: pull["downloaded_bytes"] == 1000)
        assert half["status"] == "downloading" and half["progress"] == 0.5 and half["total_bytes"] == 2000
        again = client.post("/v1/models/pulls", json={"model": LTX, "accept_license": True})
        assert again.status_code == 200 and again.json()["created_at"] == half["created_at"]  # the same pull
        hub.go.set()
        done = _poll_until(client, LTX, lambda pull: pull["status"] != "downloading")
        assert done["status"] == "completed" and done["progress"] == 1.0 and done["error"] is None
        assert done["licence"]["accepted"] is True
        rows = _rows(client)
        assert [pull["model"] for pull in client.get("/v1/models/pulls").json()["data"]] == [LTX]
    assert hub.calls == [LTX]
    assert rows[LTX]["installed"] is True and rows[LTX]["ready"] is True and rows[LTX]["requires"] == []
    assert rows[LTX]["licence"]["accepted"] is True and rows[LTX]["licence"]["summary"].endswith("(accepted)")
    assert rows["ltx2"]["installed"] is True and rows["ltx2"]["requires"] == []
    from kinema import models

    assert models.is_present(LTX)  # where `kinema models pull` puts it
    assert (models.local_dir_for(LTX) / "kinema_licence.json").is_file()


def test_a_failed_pull_says_why_without_the_servers_paths(hub, tmp_path):
    hub.fail = True
    hub.go.set()
    with _client() as client:
        assert (
            client.post("/v1/models/pulls", json={"model": "someone/tiny", "accept_license": False}).status_code == 202
        )
        failed = _poll_until(client, "someone/tiny", lambda pull: pull["status"] not in ("queued", "downloading"))
        assert "someone/tiny" not in _rows(client)  # nothing half-downloaded counts as here
    assert failed["status"] == "failed" and failed["error"]["code"] == "pull_failed"
    message = failed["error"]["message"]
    assert "No space left on device" in message and "kinema models pull someone/tiny` again to resume" in message
    assert str(tmp_path) not in message
    assert failed["licence"]["known"] is False and failed["licence"]["url"] == "https://huggingface.co/someone/tiny"


def test_only_the_owner_pulls_and_embedded_models_are_never_downloaded(hub):
    from kinema.server.users import add_key

    key = add_key("alice")
    with _client() as client:
        refused = client.post(
            "/v1/models/pulls",
            json={"model": "Wan-AI/Wan2.2-TI2V-5B-Diffusers", "accept_license": True},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "owner_only"
        built_in = client.post("/v1/models/pulls", json={"model": "kinema/world", "accept_license": False})
        assert built_in.status_code == 200 and built_in.json()["status"] == "completed"
        unknown = client.post("/v1/models/pulls", json={"model": "kinema/nothing", "accept_license": False})
        assert unknown.status_code == 404
        assert client.get("/v1/models/pulls/someone/else").status_code == 404
        assert client.post("/v1/models/pulls", json={"model": "../etc", "accept_license": True}).status_code == 400
    assert hub.calls == []


def test_a_paused_server_queues_pulls_without_running_them(hub):
    with _client(start_workers=False) as client:
        queued = client.post("/v1/models/pulls", json={"model": LTX, "accept_license": True}).json()
        assert queued["status"] == "queued" and queued["progress"] is None and queued["downloaded_bytes"] is None
        assert client.get(f"/v1/models/pulls/{LTX}").json()["status"] == "queued"
    assert hub.calls == []


def test_the_client_pulls_and_follows_progress(hub):
    """kinema.client (the copy Blender and OBS carry): pull_model, then model_pull until it is done."""
    from servers import ThreadServer

    from kinema.client import APIError, Client
    from kinema.server.app import create_app

    served = ThreadServer(create_app(api_key=None))
    try:
        client = Client(served.url)
        with pytest.raises(APIError) as refused:
            client.pull_model(LTX, accept_license=False)
        assert refused.value.status == 403 and refused.value.code == "licence_not_accepted"
        assert client.pull_model(LTX, accept_license=True)["status"] in ("queued", "downloading")
        assert hub.half.wait(60)
        hub.go.set()
        for _ in range(2000):
            pull = client.model_pull(LTX)
            if pull["status"] not in ("queued", "downloading"):
                break
            threading.Event().wait(0.01)
        assert pull["status"] == "completed", pull
        assert next(row for row in client.models() if row["id"] == LTX)["installed"] is True
    finally:
        served.stop()
