"""The job server: in-process where that suffices, a real ``kinema serve`` process where the issue demands it.

Everything runs the real embedded ``tiny`` backend at toy sizes (32x32, 9 frames).
The tiny model is built once per session and linked into each data directory.
"""

from __future__ import annotations

import base64
import io
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from polling import wait_final

SMALL = {
    "size": "32x32",
    "seconds": "0.4",
    "steps": 2,
    "model": "tiny-ltx2",
}  # 9 frames: the smallest clip tiny-ltx2 makes
KEY = "kinema-test-key-0123456789abcdef"
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),  # the openai SDK marks videos.* deprecated
    pytest.mark.usefixtures("one_torch_thread"),
]


# --------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> Path:
    """A models folder holding the built tiny LTX-2, shared by every test (building takes seconds)."""
    root = tmp_path_factory.getbasetemp() / "shared-tiny-models"
    target = root / "kinema--tiny-ltx2"
    if not (target / "model_index.json").is_file():
        from kinema.backends.tiny_parts import build_tiny

        build_tiny("ltx2", target)
    return root


def link_models(home: Path, models: Path) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "models").exists():
        (home / "models").symlink_to(models, target_is_directory=True)
    return home


@pytest.fixture(autouse=True)
def _models_in_home(kinema_env, tiny_models):
    link_models(kinema_env, tiny_models)


class ServerProcess:
    """``python -m kinema.cli serve --port 0`` on loopback; the port is read from its first line."""

    def __init__(self, home: Path, *, key: str | None = None, args: tuple[str, ...] = ()):
        self.home = home
        env = {
            **os.environ,
            "KINEMA_HOME": str(home),
            "KINEMA_LOAD_PLUGINS": "",
            "KINEMA_DEVICE": "cpu",
            "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": "1",
        }  # see one_torch_thread
        env.pop("KINEMA_API_KEY", None)
        if key:
            env["KINEMA_API_KEY"] = key
        self.log_path = home / "server.log"
        with open(self.log_path, "ab") as log:  # the server keeps its own copy of the file
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kinema.cli", "serve", "--port", "0", *args],
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
            )
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in self.proc.stdout], daemon=True).start()
        try:
            line = lines.get(timeout=120).decode()
        except queue.Empty:
            self.stop()
            raise AssertionError(f"server did not start:\n{self.log_path.read_text()}") from None
        match = re.search(r"(http://127\.0\.0\.1:\d+)", line)
        assert match, line
        self.url = match[1]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_models):
    """One real server with an API key, shared by this module's process tests."""
    home = link_models(tmp_path_factory.mktemp("served-home"), tiny_models)
    process = ServerProcess(home, key=KEY)
    yield process
    process.stop()


def sse_events(url: str, *, key: str | None = None, timeout: float = 180.0):
    """Yield (event, data) from a server-sent-event stream until a final event (a parser independent of kinema.client)."""
    headers = {"Accept": "text/event-stream", **({"Authorization": f"Bearer {key}"} if key else {})}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        name, data = None, []
        for raw in response:
            line = raw.decode().rstrip("\n")
            if line.startswith(":"):
                continue
            if not line:
                if data:
                    yield name, json.loads("\n".join(data))
                    if name in ("completed", "failed", "cancelled", "deleted"):
                        return
                name, data = None, []
            elif line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])


def png_bytes(width: int = 32, height: int = 32) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), (200, 40, 40), np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


# --------------------------------------------------------------------------- the checks, against a real process


def test_openai_sdk_creates_polls_and_downloads(server, tmp_path):
    import openai

    from kinema.media.files import probe

    client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0)
    video = client.videos.create_and_poll(
        prompt="waves at dawn, gulls crying",
        model="tiny-ltx2",
        poll_interval_ms=100,
        size="32x32",
        seconds="0.4",
        extra_body={"steps": 2, "seed": 7},
    )
    assert video.status == "completed", video.error
    assert (video.object, video.progress, video.size, video.seconds, video.model) == (
        "video",
        100,
        "32x32",
        "0.375",
        "tiny-ltx2",
    )
    assert video.completed_at >= video.created_at and video.error is None
    path = tmp_path / "clip.mp4"
    client.videos.download_content(video.id).write_to_file(path)
    info = probe(path)
    assert (info.width, info.height, info.frame_count, info.video_codec) == (32, 32, 9, "h264")
    assert info.has_audio and info.audio_codec == "aac" and abs(info.audio_duration - 0.375) < 0.05
    assert json.loads(info.metadata["kinema"])["seed"] == 7
    thumbnail = client.videos.download_content(video.id, variant="thumbnail").read()
    assert thumbnail.startswith(b"\x89PNG")
    assert video.id in [v.id for v in client.videos.list(limit=100)]
    assert client.videos.retrieve(video.id).status == "completed"
    assert client.videos.delete(video.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        client.videos.retrieve(video.id)


def test_openai_sdk_multipart_image_and_errors(server):
    import openai

    client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0)
    video = client.videos.create(
        prompt="a red card",
        input_reference=("card.png", png_bytes(), "image/png"),
        size="32x32",
        seconds="0.4",
        extra_body={"steps": 2, "audio": False},
    )
    assert video.kinema["has_image"] is True and video.kinema["audio"] is False
    with pytest.raises(openai.BadRequestError) as caught:
        client.videos.create(prompt="x", size="huge")
    assert caught.value.body["param"] == "size"
    with pytest.raises(openai.NotFoundError):
        client.videos.create(prompt="x", model="no-such-model")
    assert client.videos.poll(video.id, poll_interval_ms=100).status == "completed"


def test_sse_progress_arrives_for_every_step(server):
    from kinema.client import Client

    client = Client(server.url, api_key=KEY)
    # A job queued behind another: subscribed before its first step.
    blocker = client.submit("a blocker", size="32x32", seconds=0.4, steps=20, audio=False)
    job = client.submit("a lighthouse", size="32x32", seconds=0.4, steps=6)
    events = list(sse_events(f"{server.url}/v1/videos/{job['id']}/events", key=KEY))
    assert events[0][0] == "video"
    steps = [data["step"] for name, data in events if name == "progress"]
    assert steps == [1, 2, 3, 4, 5, 6]
    progress = [data for name, data in events if name == "progress"]
    assert all(p["total"] == 6 and 0 <= p["progress"] <= 99 for p in progress)
    assert events[-1][0] == "completed" and events[-1][1]["status"] == "completed"
    # Connecting late still gets a snapshot, then the final event at once.
    late = list(sse_events(f"{server.url}/v1/videos/{job['id']}/events", key=KEY))
    assert [name for name, _ in late] == ["video", "completed"]
    assert client.wait(blocker["id"])["status"] == "completed"


def test_cancel_running_and_queued_jobs(server):
    from kinema.client import Client, JobCancelled

    client = Client(server.url, api_key=KEY)
    running = client.submit("a long one", size="32x32", seconds=0.4, steps=400, audio=False)
    queued = client.submit("never runs", **{**SMALL, "seconds": 0.4})
    stream = sse_events(f"{server.url}/v1/videos/{running['id']}/events", key=KEY)
    for name, _ in stream:
        if name == "progress":
            break
    cancelled = client.cancel(queued["id"])
    assert cancelled["status"] == "failed" and cancelled["error"]["code"] == "cancelled"
    assert cancelled["kinema"]["status"] == "cancelled"
    started = time.monotonic()
    client.cancel(running["id"])
    rest = list(stream)
    assert rest[-1][0] == "cancelled"
    assert time.monotonic() - started < 10
    steps = [d["step"] for n, d in rest if n == "progress"]
    assert not steps or max(steps) < 400
    with pytest.raises(JobCancelled):
        client.wait(running["id"])
    final = client.get(running["id"])
    assert (final["status"], final["error"]["code"], final["kinema"]["status"]) == ("failed", "cancelled", "cancelled")
    # The device is free again afterwards.
    assert client.wait(client.submit("after", size="32x32", seconds=0.4, steps=2)["id"])["status"] == "completed"


def test_thirty_concurrent_jobs_each_complete_exactly_once(server):
    from kinema.client import Client

    client = Client(server.url, api_key=KEY)

    def one(i: int) -> dict:
        job = client.submit(f"job {i}", size="32x32", seconds=0.4, steps=2, audio=False, seed=i)
        return client.wait(job["id"], timeout=300)

    with ThreadPoolExecutor(30) as pool:
        finished = list(pool.map(one, range(30)))
    ids = {job["id"] for job in finished}
    assert len(ids) == 30
    assert all(job["status"] == "completed" and job["kinema"]["attempts"] == 1 for job in finished)
    listed = []
    page = client.list(limit=100)
    listed += page["data"]
    while page["has_more"]:
        page = client.list(limit=100, after=page["last_id"])
        listed += page["data"]
    mine = [v for v in listed if v["id"] in ids]
    assert len(mine) == 30 and all(v["status"] == "completed" for v in mine)
    for job in finished:
        assert (server.home / "jobs" / job["id"] / "video.mp4").stat().st_size > 0


def test_wrong_api_key_gets_401(server):
    import openai

    from kinema.client import AuthenticationError, Client

    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"}):
        request = urllib.request.Request(f"{server.url}/v1/videos", headers=headers)
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=10)
        assert caught.value.code == 401
        assert json.loads(caught.value.read())["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0).videos.list()
    with pytest.raises(AuthenticationError, match="KINEMA_API_KEY"):
        Client(server.url, api_key="wrong").list()
    assert Client(server.url, api_key="wrong").health()["auth"] is True  # health needs no key


def test_kill_9_with_jobs_queued_and_running_loses_nothing(tmp_path, tiny_models):
    from kinema.client import Client
    from kinema.media.files import probe

    home = link_models(tmp_path / "home", tiny_models)
    first = ServerProcess(home)
    try:
        client = Client(first.url)
        done = client.submit("finished before the crash", size="32x32", seconds=0.4, steps=2, model="tiny-ltx2")
        client.wait(done["id"])
        running = client.submit("interrupted", size="32x32", seconds=0.4, steps=60, audio=False, model="tiny-ltx2")
        queued = [client.submit(f"queued {i}", size="32x32", seconds=0.4, steps=2, model="tiny-ltx2") for i in range(3)]
        for name, _ in sse_events(f"{first.url}/v1/videos/{running['id']}/events"):
            if name == "progress":
                break
        assert client.get(queued[0]["id"])["status"] == "queued"
    finally:
        first.kill9()
    assert first.proc.returncode == -signal.SIGKILL

    second = ServerProcess(home)
    try:
        client = Client(second.url)
        rerun = client.wait(running["id"], timeout=300)
        assert rerun["status"] == "completed" and rerun["kinema"]["attempts"] == 2
        for job in queued:
            final = client.wait(job["id"], timeout=300)
            assert final["status"] == "completed" and final["kinema"]["attempts"] == 1
        path = client.download(done["id"], tmp_path / "before.mp4")
        assert probe(path).frame_count == 9
        ids = {v["id"] for v in client.list(limit=100)["data"]}
        assert ids == {done["id"], running["id"], *(j["id"] for j in queued)}
    finally:
        second.stop()


def test_refuses_non_loopback_bind_without_key(tmp_path):
    env = {**os.environ, "KINEMA_HOME": str(tmp_path)}
    env.pop("KINEMA_API_KEY", None)
    result = subprocess.run(
        [sys.executable, "-m", "kinema.cli", "serve", "--host", "0.0.0.0", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "KINEMA_API_KEY" in result.stderr and "0.0.0.0" in result.stderr
    assert "serving" not in result.stdout


def test_bind_check_and_help():
    from click.testing import CliRunner

    from kinema.cli import cli
    from kinema.errors import KinemaError
    from kinema.server.app import check_bind, is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1") and is_loopback("[::1]")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("192.168.1.10")
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", "a-key")
    with pytest.raises(KinemaError, match="KINEMA_API_KEY"):
        check_bind("::", None)
    result = CliRunner().invoke(cli, ["serve", "--help"])
    assert result.exit_code == 0 and "127.0.0.1" in result.output and "KINEMA_API_KEY" in result.output


# --------------------------------------------------------------------------- in-process: API details


def test_create_json_validates_early(app_client):
    post = lambda body: app_client.post("/v1/videos", json=body)  # noqa: E731
    cases = [
        ({"prompt": ""}, 400, "prompt"),
        ({"prompt": "x", "size": "12"}, 400, "size"),
        ({"prompt": "x", "size": "8x8"}, 400, "size"),
        ({"prompt": "x", "seconds": "forever"}, 400, "seconds"),
        ({"prompt": "x", "seconds": "999"}, 400, "seconds"),
        ({"prompt": "x", "steps": 0}, 400, "steps"),
        ({"prompt": "x", "nope": 1}, 400, "nope"),
        ({"prompt": "x", "model": "sora-3000-nope"}, 200, None),  # sora-* runs the default backend
        ({"prompt": "x", "model": "../../etc"}, 404, "model"),
        ({"prompt": "x", "backend": "nope"}, 404, "backend"),
        ({"prompt": "x", "model": "tiny-ltx2", "backend": "wan"}, 400, "backend"),
        ({"prompt": "x", "style": "no-such-style"}, 404, "style"),
        ({"prompt": "   "}, 400, "prompt"),
        ({"prompt": "x", "size": " 32x32"}, 400, "size"),
        ({"prompt": "x", "tier": "ultra"}, 400, "tier"),
        ({"prompt": "x", "input_reference": {"image_url": "https://example.com/a.png"}}, 400, "input_reference"),
        ({"prompt": "x", "input_reference": {"file_id": "file_1"}}, 400, "input_reference"),
        (
            {"prompt": "x", "input_reference": {"image_url": "data:image/png;base64,bm90IGFuIGltYWdl"}},
            400,
            "input_reference",
        ),
    ]
    for body, status, param in cases:
        response = post(body)
        assert response.status_code == status, (body, response.text)
        if status != 200:
            error = response.json()["error"]
            assert error["param"] == param and error["message"] and error["type"], (body, error)
    assert post(["not", "an", "object"]).status_code == 400
    assert (
        app_client.post("/v1/videos", content=b"{bad json", headers={"Content-Type": "application/json"}).status_code
        == 400
    )
    assert app_client.post("/v1/videos", content=b"x", headers={"Content-Type": "text/plain"}).status_code == 415
    # Nothing was queued by the failures.
    assert len(app_client.get("/v1/videos").json()["data"]) == 1


def test_provenance_check_of_a_finished_video(app_client):
    video = app_client.post(
        "/v1/videos", json={"prompt": "a lighthouse", "size": "32x32", "seconds": "0.375", "steps": 2, "seed": 5}
    ).json()
    assert app_client.get(f"/v1/videos/{video['id']}/provenance").status_code in (200, 409)
    assert wait_final(app_client, video["id"])["status"] == "completed"
    report = app_client.get(f"/v1/videos/{video['id']}/provenance").json()
    assert report["id"] == video["id"] and report["ok"] and report["manifest"] == "valid"
    assert report["generation"]["seed"] == 5 and "path" not in report
    assert app_client.get("/v1/videos/video_" + "0" * 32 + "/provenance").status_code == 404


def test_quality_tier_reaches_the_job(app_client):
    response = app_client.post("/v1/videos", json={"prompt": "x", "tier": "draft", "size": "32x32"})
    assert response.status_code == 200, response.text
    video = response.json()
    assert video["kinema"]["tier"] == "draft"
    assert app_client.get(f"/v1/videos/{video['id']}").json()["kinema"]["tier"] == "draft"


def test_create_with_image_data_url_and_multipart(app_client, kinema_env):
    image = png_bytes(48, 40)
    data_url = "data:image/png;base64," + base64.b64encode(image).decode()
    response = app_client.post(
        "/v1/videos", json={"prompt": "from json", **SMALL, "seconds": 0.4, "input_reference": {"image_url": data_url}}
    )
    assert response.status_code == 200, response.text
    json_job = response.json()
    response = app_client.post(
        "/v1/videos",
        data={"prompt": "from a form", "size": "32x32", "seconds": "0.4", "steps": "2", "audio": "false", "seed": "5"},
        files={"input_reference": ("a.png", image, "image/png")},
    )
    assert response.status_code == 200, response.text
    form_job = response.json()
    assert form_job["kinema"]["audio"] is False and form_job["kinema"]["seed"] == 5
    for job in (json_job, form_job):
        assert job["kinema"]["has_image"] is True
        assert (kinema_env / "jobs" / job["id"] / "input.png").is_file()
        assert wait_final(app_client, job["id"])["status"] == "completed"
    bad = app_client.post(
        "/v1/videos", data={"prompt": "x"}, files={"input_reference": ("a.png", b"GIF89a....", "image/gif")}
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "input_reference"
    tiny = app_client.post(
        "/v1/videos", data={"prompt": "x"}, files={"input_reference": ("a.png", png_bytes(4, 4), "image/png")}
    )
    assert tiny.status_code == 400
    other = app_client.post("/v1/videos", data={"prompt": "x"}, files={"other": ("a.png", image, "image/png")})
    assert other.status_code == 400


def test_upload_size_limits(kinema_env):
    from fastapi.testclient import TestClient

    from kinema.server.app import MAX_IMAGE_SIDE, create_app

    with TestClient(create_app(api_key=None, max_body_bytes=50_000), base_url="http://127.0.0.1") as client:
        big = client.post(
            "/v1/videos", data={"prompt": "x"}, files={"input_reference": ("a.png", os.urandom(60_000), "image/png")}
        )
        assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"

        def chunks():
            for _ in range(10):
                yield b"x" * 10_000

        streamed = client.post("/v1/videos", content=chunks(), headers={"Content-Type": "application/json"})
        assert streamed.status_code == 413
    with TestClient(create_app(api_key=None), base_url="http://127.0.0.1") as client:
        wide = client.post(
            "/v1/videos",
            data={"prompt": "x"},
            files={"input_reference": ("a.png", png_bytes(MAX_IMAGE_SIDE + 1, 16), "image/png")},
        )
        assert wide.status_code == 400 and "at most" in wide.json()["error"]["message"]


def test_ids_are_validated_and_paths_never_escape(app_client):
    for bad in ("..%2F..%2Fetc%2Fpasswd", "video_..", "video_" + "g" * 32, "jobs.db", "%2E%2E", "video_" + "a" * 33):
        for suffix in ("", "/content", "/content?variant=thumbnail", "/events"):
            response = app_client.get(f"/v1/videos/{bad}{suffix}")
            assert response.status_code == 404, (bad, suffix, response.status_code)
            assert "error" in response.json()
        assert app_client.delete(f"/v1/videos/{bad}").status_code == 404
        assert app_client.post(f"/v1/videos/{bad}/cancel").status_code == 404


def test_content_states_list_pagination_and_delete(app_client, kinema_env):
    ids = [app_client.post("/v1/videos", json={"prompt": f"clip {i}", **SMALL}).json()["id"] for i in range(3)]
    early = app_client.get(f"/v1/videos/{ids[-1]}/content")
    assert early.status_code == 409 and early.json()["error"]["code"] == "not_ready"
    for video_id in ids:
        assert wait_final(app_client, video_id)["status"] == "completed"
    content = app_client.get(f"/v1/videos/{ids[0]}/content")
    assert content.status_code == 200 and content.headers["content-type"] == "video/mp4"
    ranged = app_client.get(f"/v1/videos/{ids[0]}/content", headers={"Range": "bytes=0-9"})
    assert ranged.status_code == 206 and len(ranged.content) == 10
    sheet = app_client.get(f"/v1/videos/{ids[0]}/content?variant=spritesheet")
    assert sheet.status_code == 200 and sheet.headers["content-type"] == "image/jpeg"
    from PIL import Image

    grid = Image.open(io.BytesIO(sheet.content))
    assert grid.size == (4 * 32, 3 * 32)  # 9 frames, 4 across: every frame of this short clip, in 3 rows
    assert app_client.get(f"/v1/videos/{ids[0]}/content?variant=nope").status_code == 400
    page = app_client.get("/v1/videos?limit=2").json()
    assert [v["id"] for v in page["data"]] == ids[::-1][:2] and page["has_more"] is True
    rest = app_client.get(f"/v1/videos?limit=2&after={page['last_id']}").json()
    assert "data" in rest, rest
    assert [v["id"] for v in rest["data"]] == [ids[0]] and rest["has_more"] is False
    ascending = app_client.get("/v1/videos?order=asc&limit=100").json()
    assert [v["id"] for v in ascending["data"]] == ids
    assert app_client.get("/v1/videos?after=video_" + "0" * 32).status_code == 404  # no such video
    assert app_client.get("/v1/videos?after=nonsense").status_code == 400  # not a video id at all
    assert [v["id"] for v in app_client.get("/v1/videos?after=").json()["data"]] == ids[::-1]  # empty: from the start
    assert app_client.get("/v1/videos?limit=0").status_code == 400
    deleted = app_client.delete(f"/v1/videos/{ids[0]}").json()
    assert deleted == {"id": ids[0], "object": "video.deleted", "deleted": True}
    assert not (kinema_env / "jobs" / ids[0]).exists()
    assert app_client.get(f"/v1/videos/{ids[0]}").status_code == 404
    assert app_client.delete(f"/v1/videos/{ids[0]}").status_code == 404
    assert app_client.post(f"/v1/videos/{ids[1]}/cancel").status_code == 409  # already completed


def test_delete_running_job_answers_at_once_and_cleans_up_when_it_stops(app_client, kinema_env):
    job = app_client.post(
        "/v1/videos", json={"prompt": "long", "size": "32x32", "seconds": 0.4, "steps": 400, "audio": False}
    ).json()
    after = app_client.post("/v1/videos", json={"prompt": "next in line", **SMALL}).json()
    events = app_client.app.state.manager.subscribe  # the job's own events: no clock decides anything here
    heard: queue.Queue = queue.Queue()
    deadline = time.monotonic() + 180
    while app_client.get(f"/v1/videos/{job['id']}").json()["kinema"]["step"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    events(job["id"], lambda event: heard.put(event.name))
    response = app_client.delete(f"/v1/videos/{job['id']}")  # at once: the job still has ~400 steps to go
    assert response.status_code == 200 and response.json() == {
        "id": job["id"],
        "object": "video.deleted",
        "deleted": True,
    }
    assert app_client.get(f"/v1/videos/{job['id']}").status_code == 404
    assert job["id"] not in {v["id"] for v in app_client.get("/v1/videos").json()["data"]}
    assert app_client.delete(f"/v1/videos/{job['id']}").status_code == 404
    while heard.get(timeout=60) != "deleted":  # listeners hear it was deleted
        pass
    # The worker stops it within a step and removes it; the next job then runs.
    assert wait_final(app_client, after["id"])["status"] == "completed"
    assert not (kinema_env / "jobs" / job["id"]).exists()
    assert job["id"] not in app_client.app.state.manager._jobs.ids()


def test_models_health_and_openapi(app_client):
    health = app_client.get("/health").json()
    assert health["status"] == "ok" and health["auth"] is False
    models = app_client.get("/v1/models").json()
    tiny = next(m for m in models["data"] if m["id"] == "tiny-ltx2")
    assert tiny["ready"] is True and tiny["object"] == "model"
    world = next(m for m in models["data"] if m["id"] == "tiny")  # the default: the trained demo world
    assert world["ready"] is True and {"world", "demo"} <= set(world["aliases"])
    schema = app_client.get("/openapi.json").json()
    body = schema["paths"]["/v1/videos"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}
    assert "negative_prompt" in schema["components"]["schemas"]["VideoCreateParams"]["properties"]


def test_loopback_server_rejects_foreign_host_and_origin(kinema_env):
    from fastapi.testclient import TestClient

    from kinema.server.app import create_app

    with TestClient(create_app(api_key=None), base_url="http://127.0.0.1:8765") as client:
        assert client.get("/v1/models").status_code == 200
        assert client.get("/v1/models", headers={"Host": "evil.example:8765"}).status_code == 403
        assert (
            client.post("/v1/videos", data={"prompt": "x"}, headers={"Origin": "https://evil.example"}).status_code
            == 403
        )
        assert client.get("/v1/models", headers={"Origin": "http://localhost:3000"}).status_code == 200
        assert client.get("/v1/models", headers={"Host": "[::1]:8765"}).status_code == 200


def test_api_key_in_process(kinema_env):
    from fastapi.testclient import TestClient

    from kinema.server.app import create_app

    with TestClient(create_app(api_key="s3cret"), base_url="http://any.host.example") as client:
        assert client.get("/v1/models").status_code == 401
        assert client.get("/v1/models").headers["www-authenticate"] == "Bearer"
        assert client.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert client.get("/health").status_code == 200


# --------------------------------------------------------------------------- the queue itself


def test_recovery_requeues_once_then_fails(kinema_env):
    from kinema.server.jobs import JobManager, JobStore, new_id

    directory = kinema_env / "jobs"
    directory.mkdir()
    store = JobStore(directory / "jobs.db")
    ids = {}
    for name, attempts, cancel in (("fresh", 1, 0), ("twice", 2, 0), ("cancelled", 1, 1), ("waiting", 0, 0)):
        ids[name] = new_id()
        (directory / ids[name]).mkdir()
        store.insert(
            {
                "id": ids[name],
                "status": "queued",
                "device": "cpu",
                "model": "tiny-ltx2",
                "backend": "tiny-ltx2",
                "prompt": name,
                "request": {"prompt": name},
                "plan": {"steps": 2},
                "has_image": False,
                "created_at": 1,
            }
        )
        if name != "waiting":
            store._change(
                "UPDATE jobs SET status = 'in_progress', attempts = ?, cancel_requested = ? WHERE id = ?",
                (attempts, cancel, ids[name]),
            )
    (directory / ids["fresh"] / ".video.mp4.half.tmp").write_bytes(b"partial")
    orphan = directory / new_id()
    orphan.mkdir()
    store.close()

    manager = JobManager(kinema_env, start_workers=False).start()
    try:
        status = lambda name: manager.get(ids[name])["status"]  # noqa: E731
        assert status("fresh") == "queued" and status("waiting") == "queued"
        assert status("twice") == "failed" and status("cancelled") == "cancelled"
        failed = manager.get(ids["twice"])
        assert failed["error_code"] == "server_stopped" and "server stopped while generating" in failed["error_message"]
        assert not (directory / ids["fresh"] / ".video.mp4.half.tmp").exists()
        assert not orphan.exists()
        assert manager.recovered["requeued"] == [ids["fresh"]]
        # A second server on the same data directory is refused while this one runs.
        from kinema.server.jobs import JobsBusyError

        with pytest.raises(JobsBusyError, match="another kinema server"):
            JobManager(kinema_env).start()
    finally:
        manager.stop()


def test_transitions_happen_exactly_once(kinema_env):
    from kinema.server.jobs import JobStore, new_id

    (kinema_env / "jobs").mkdir()
    store = JobStore(kinema_env / "jobs" / "jobs.db")
    job_id = new_id()
    store.insert(
        {
            "id": job_id,
            "status": "queued",
            "device": "cpu",
            "model": "tiny-ltx2",
            "backend": "tiny-ltx2",
            "prompt": "p",
            "request": {},
            "plan": {},
            "has_image": False,
            "created_at": 1,
        }
    )
    results = []
    barrier = threading.Barrier(8)

    def claim():
        barrier.wait()
        results.append(store.claim("cpu"))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sum(r is not None for r in results) == 1
    assert store.request_cancel(job_id)
    assert not store.finish(job_id, "completed", unless_cancel_requested=True)  # a cancel came in first
    assert store.finish(job_id, "cancelled", code="cancelled", message="m")
    assert not store.finish(job_id, "failed")
    assert store.get(job_id)["status"] == "cancelled" and store.get(job_id)["attempts"] == 1
    store.close()


def test_jobs_run_in_submission_order_one_at_a_time(kinema_env):
    """A fake backend records overlap and order (the queue logic, not the model, is under test)."""
    from kinema import Clip, hookimpl
    from kinema.backends.base import Backend, BackendStatus, Defaults
    from kinema.plugins import pm

    log: list = []
    running = threading.Lock()

    class Recorder(Backend):
        name = "recorder"
        description = "records calls"
        defaults = Defaults(width=16, height=16, fps=8, seconds=1, steps=2, guidance=1.0)
        size_multiple, frame_multiple, min_frames = 16, 1, 1
        makes_audio = False

        def status(self):
            return BackendStatus(True, "ok", "cpu")

        def generate(self, request, plan, *, progress, cancel):
            assert running.acquire(blocking=False), "two jobs ran at once"
            try:
                for step in range(plan.steps):
                    time.sleep(0.01)
                    cancel.raise_if_cancelled()
                    progress(__import__("kinema").Progress(step + 1, plan.steps))
                log.append(request.prompt)
                return Clip(np.zeros((plan.num_frames, 16, 16, 3), np.uint8), plan.fps)
            finally:
                running.release()

    class Plugin:
        __name__ = "test-recorder"

        @hookimpl
        def register_backends(self, register):
            register(Recorder())

    pm.register(Plugin(), name="test-recorder")
    try:
        from fastapi.testclient import TestClient

        from kinema.server.app import create_app

        with TestClient(create_app(api_key=None), base_url="http://127.0.0.1") as client:
            ids = [
                client.post("/v1/videos", json={"prompt": f"p{i}", "model": "recorder", "seconds": 0.25}).json()["id"]
                for i in range(8)
            ]
            for video_id in ids:
                assert wait_final(client, video_id)["status"] == "completed"
        assert log == [f"p{i}" for i in range(8)]
    finally:
        pm.unregister(name="test-recorder")


def test_graceful_stop_puts_the_running_job_back(kinema_env):
    """Ctrl-C / SIGTERM: the running job is stopped within a step and re-queued without using up an attempt."""
    from fastapi.testclient import TestClient

    from kinema.server.app import create_app
    from kinema.server.jobs import JobManager

    with TestClient(create_app(api_key=None), base_url="http://127.0.0.1") as client:
        job = client.post(
            "/v1/videos", json={"prompt": "long", "size": "32x32", "seconds": 0.4, "steps": 400, "audio": False}
        ).json()
        deadline = time.monotonic() + 180
        while client.get(f"/v1/videos/{job['id']}").json()["kinema"]["step"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 10
    manager = JobManager(kinema_env, start_workers=False).start()
    try:
        record = manager.get(job["id"])
        assert (record["status"], record["attempts"]) == ("queued", 0)
        assert manager.recovered == {"requeued": [], "failed": [], "cancelled": []}
    finally:
        manager.stop()


def test_jobs_ask_the_real_backend_for_previews(app_client):
    """The tiny LTX-2 job's steps carry preview pictures (what the events stream sends to watchers)."""
    from kinema import hookimpl
    from kinema.plugins import pm

    seen = []

    class Watcher:
        __name__ = "test-preview-watcher"

        @hookimpl
        def generation_progress(self, progress):
            seen.append(None if progress.preview is None else progress.preview.shape)

    pm.register(Watcher(), name="test-preview-watcher")
    try:
        job = app_client.post("/v1/videos", json={"prompt": "p", "size": "32x32", "seconds": 0.4, "steps": 2}).json()
        assert wait_final(app_client, job["id"])["status"] == "completed"
    finally:
        pm.unregister(name="test-preview-watcher")
    video_steps = [shape for shape in seen if shape is not None]
    assert video_steps and all(len(shape) == 3 and shape[2] == 3 for shape in video_steps), seen


def test_sse_carries_previews_and_replays_for_late_listeners(kinema_env):
    """A backend that sends previews: listeners get them as base64 JPEG; a late listener gets the steps so far."""
    from fastapi.testclient import TestClient

    from kinema import Clip, Progress, hookimpl
    from kinema.backends.base import Backend, BackendStatus, Defaults
    from kinema.plugins import pm
    from kinema.server.app import create_app

    gate, halfway, resume = threading.Event(), threading.Event(), threading.Event()

    class Previewer(Backend):
        name = "previewer"
        description = "sends previews"
        defaults = Defaults(width=16, height=16, fps=8, seconds=1, steps=4, guidance=1.0)
        size_multiple, frame_multiple, min_frames = 16, 1, 1
        makes_audio = False

        def status(self):
            return BackendStatus(True, "ok", "cpu")

        def generate(self, request, plan, *, progress, cancel):
            gate.wait(30)
            for step in range(1, 5):
                progress(Progress(step, 4, "video", np.full((16, 16, 3), step * 60, np.uint8)))
                if step == 2:
                    halfway.set()
                    resume.wait(30)
            return Clip(np.zeros((plan.num_frames, 16, 16, 3), np.uint8), plan.fps)

    class Plugin:
        __name__ = "test-previewer"

        @hookimpl
        def register_backends(self, register):
            register(Previewer())

    pm.register(Plugin(), name="test-previewer")
    try:
        app = create_app(api_key=None)
        with TestClient(app, base_url="http://127.0.0.1") as client:
            job = client.post("/v1/videos", json={"prompt": "p", "model": "previewer"}).json()
            events: list = []

            def listen():
                with client.stream("GET", f"/v1/videos/{job['id']}/events") as response:
                    name = None
                    for line in response.iter_lines():
                        if line.startswith("event: "):
                            name = line[7:]
                        elif line.startswith("data: "):
                            events.append((name, json.loads(line[6:])))

            listener = threading.Thread(target=listen)
            listener.start()
            manager = app.state.manager
            deadline = time.monotonic() + 30
            while not manager._live.get(job["id"]) or not manager._live[job["id"]].subscribers:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            gate.set()
            assert halfway.wait(30)
            late: list = []
            with client.stream("GET", f"/v1/videos/{job['id']}/events") as response:
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        late.append(json.loads(line[6:]))
                        if len(late) == 3:  # video snapshot + steps 1 and 2
                            break
            resume.set()
            listener.join(30)
        progress = [data for name, data in events if name == "progress"]
        assert [p["step"] for p in progress] == [1, 2, 3, 4]
        assert all(base64.b64decode(p["preview_jpeg_base64"]).startswith(b"\xff\xd8") for p in progress)
        assert events[-1][0] == "completed"
        assert late[0]["object"] == "video" and [p["step"] for p in late[1:]] == [1, 2]
        assert "preview_jpeg_base64" not in late[1] and "preview_jpeg_base64" in late[2]  # only the latest preview
    finally:
        resume.set()
        gate.set()
        pm.unregister(name="test-previewer")
