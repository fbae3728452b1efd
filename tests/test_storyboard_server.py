"""Remix, extend and storyboards through the job server (in-process, real tiny backend, real OpenAI SDK)."""

import functools
import json

import numpy as np
import polling
import pytest

from kinema.media.files import probe

SMALL = {"size": "32x32", "seconds": "0.4", "steps": 2}
wait_final = functools.partial(polling.wait_final, timeout=300.0)  # storyboards make several shots
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),  # the openai SDK marks videos.* deprecated
    pytest.mark.usefixtures("one_torch_thread"),
]


def download(client, video_id, tmp_path):
    path = tmp_path / f"{video_id}.mp4"
    path.write_bytes(client.get(f"/v1/videos/{video_id}/content").content)
    return path


def test_openai_sdk_remix_and_kinema_extend_record_their_parent(app_client, tmp_path):
    import openai

    sdk = openai.OpenAI(base_url="http://127.0.0.1/v1", api_key="-", http_client=app_client, max_retries=0)
    source = sdk.videos.create(
        prompt="a kite over a beach",
        model="tiny-ltx2",
        size="32x32",
        seconds="0.4",
        extra_body={"steps": 2, "seed": 5, "tier": "draft"},
    )
    assert wait_final(app_client, source.id)["status"] == "completed"

    remixed = sdk.videos.remix(source.id, prompt="a paper kite over a beach", extra_body={"strength": 0.5, "steps": 4})
    assert remixed.remixed_from_video_id == source.id and remixed.model == "tiny-ltx2"
    done = wait_final(app_client, remixed.id)
    assert done["status"] == "completed", done["error"]
    assert done["kinema"]["kind"] == "remix" and done["kinema"]["parent"] == source.id
    info = probe(download(app_client, remixed.id, tmp_path))
    assert info.frame_count == 9 and info.has_audio
    metadata = json.loads(info.metadata["kinema"])
    assert metadata["parent"]["id"] == source.id and metadata["strength"] == 0.5
    assert done["kinema"]["tier"] == metadata["tier"] == "draft"  # a draft's remix stays a draft unless asked

    longer = app_client.post(
        f"/v1/videos/{source.id}/extend", json={"seconds": "0.25", "steps": 2, "tier": "final"}
    ).json()
    assert longer["seconds"] == "0.625" and longer["remixed_from_video_id"] is None
    done = wait_final(app_client, longer["id"])
    assert done["status"] == "completed", done["error"]
    info = probe(download(app_client, longer["id"], tmp_path))
    assert info.frame_count == 15 and abs(info.audio_duration - info.video_duration) < 1e-3
    metadata = json.loads(info.metadata["kinema"])
    assert metadata["parent"]["id"] == source.id and metadata["prompt"] == "a kite over a beach"
    assert metadata["tier"] == "final"


def test_a_storyboard_job_makes_one_film(app_client, tmp_path):
    text = "Backend: tiny-ltx2\nShot 1 (0.25s): a door\nShot 2 (0.25s, continue): it opens\nShot 3 (0.25s): a hallway\n"
    video = app_client.post(
        "/v1/storyboards", json={"storyboard": text, "size": "32x32", "steps": 2, "seed": 4, "tier": "draft"}
    ).json()
    assert video["seconds"] == "0.75" and video["prompt"] == "a door" and video["kinema"]["tier"] == "draft"
    assert video["size"] == "32x32"
    done = wait_final(app_client, video["id"])
    assert done["status"] == "completed", done["error"]
    assert done["kinema"]["kind"] == "storyboard" and done["kinema"]["seed"] == 4
    info = probe(download(app_client, video["id"], tmp_path))
    assert info.frame_count == 18 and abs(info.audio_duration - info.video_duration) < 1e-3
    shots = json.loads(info.metadata["kinema"])["shots"]
    assert [s["seed"] for s in shots] == [4, 5, 6] and [s["cut"] for s in shots] == ["hard", "continue", "hard"]
    assert json.loads(info.metadata["kinema"])["tier"] == "draft"


def test_a_storyboard_job_keeps_the_storyboards_own_tier(app_client):
    text = "Tier: final\nShot 1 (0.25s): a door\n"
    video = app_client.post("/v1/storyboards", json={"storyboard": text, "size": "32x32", "steps": 2}).json()
    assert video["kinema"]["tier"] == "final"
    assert wait_final(app_client, video["id"])["status"] == "completed"


def test_bad_follow_ups_are_refused_up_front(app_client):
    response = app_client.post("/v1/storyboards", json={"storyboard": "Shot 1 (2s): a\nShot 2 (-1s): b\n"})
    assert response.status_code == 400
    assert "line 2: shot 2: seconds must be more than 0" in response.json()["error"]["message"]

    response = app_client.post("/v1/storyboards", json={"storyboard": {"shots": []}})
    assert response.status_code == 400 and "no shots" in response.json()["error"]["message"]

    assert app_client.post("/v1/videos/video_missing/remix", json={"prompt": "x"}).status_code == 404
    assert app_client.post("/v1/videos/video_missing/extend", json={"seconds": 1}).status_code == 404


def test_a_storyboard_sent_to_the_server_cannot_read_its_files_but_can_carry_pictures(app_client, tmp_path):
    import base64

    from kinema.media.files import encode_png

    secret = tmp_path / "secret.png"
    secret.write_bytes(encode_png(np.zeros((32, 32, 3), np.uint8)))
    for path in (str(secret), "/no/such/file.png"):  # same answer either way: no probing the server's disk
        board = {"shots": [{"prompt": "a door", "seconds": 0.25, "image": path}]}
        response = app_client.post("/v1/storyboards", json={"storyboard": board, "size": "32x32", "steps": 2})
        assert response.status_code == 400
        assert "cannot name files on its disk" in response.json()["error"]["message"]

    picture = np.zeros((32, 32, 3), np.uint8)
    picture[:, :16] = 255
    url = "data:image/png;base64," + base64.b64encode(encode_png(picture)).decode()
    board = {"shots": [{"prompt": "a door", "seconds": 0.25, "image": url}]}
    video = app_client.post("/v1/storyboards", json={"storyboard": board, "size": "32x32", "steps": 2}).json()
    assert wait_final(app_client, video["id"])["status"] == "completed"

    board = {"shots": [{"prompt": "a door", "seconds": 0.25, "image": "data:image/png;base64,bm90IGFuIGltYWdl"}]}
    response = app_client.post("/v1/storyboards", json={"storyboard": board})
    assert response.status_code == 400 and "not a readable PNG, JPEG or WebP" in response.json()["error"]["message"]
