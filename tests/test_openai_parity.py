"""Every ``client.videos`` method of the pinned openai SDK against the in-process server (issue 20).

The SDK's own types parse every answer; the JSON forms the SDK cannot send (an input reference or a video
given as an object) go as raw POSTs. Jobs run the real embedded ``tiny`` backend at toy sizes.
"""

from __future__ import annotations

import json

import pytest

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

    with TestClient(create_app(api_key=None, start_workers=False), base_url="http://127.0.0.1") as client:
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
    video = sdk.videos.create(prompt="x", model="tiny", **SMALL)
    with pytest.raises(openai.ConflictError) as caught:  # not finished yet
        sdk.videos.download_content(video.id)
    assert caught.value.code == "not_ready" and "queued" in caught.value.message


# --------------------------------------------------------------------------- the hosted API's values


def test_sora_names_sizes_and_seconds_are_made_as_the_backend_makes_them(queue_only, kinema_env):
    sdk = sdk_for(queue_only)
    video = sdk.videos.create(prompt="waves at dawn", model="sora-2", size="1280x720", seconds="4")
    # No LTX-2 or Wan here, so sora-2 runs the server's default backend, the tiny demo: small pictures.
    assert (video.model, video.size, video.seconds) == ("sora-2", "96x64", "4.04167")
    info = video.model_extra["kinema"]
    assert info["backend"] == "tiny" and info["tier"] == "standard"
    assert info["notes"][:2] == [
        "sora-2 runs tiny at tier standard: the server's default backend",
        "size 1280x720 made as 96x64: tiny is a demo that makes small pictures; same shape",
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
