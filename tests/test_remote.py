"""The ``remote`` backend against a second kinema server on loopback that offers only the plain /v1/videos subset
(create_app(videos_only=True): create, retrieve, content, delete), as vLLM-Omni and SGLang do."""

from __future__ import annotations

import json
import threading
import time
from fractions import Fraction

import numpy as np
import pytest
from servers import ThreadServer

import kinema
from kinema.backends.base import Backend, BackendStatus, Defaults
from kinema.backends.remote import RemoteError, load_remotes
from kinema.clip import Clip
from kinema.errors import GenerationCancelled, InvalidRequestError, KinemaError
from kinema.plugins import get_backend, pm
from kinema.progress import Progress

FAR_KEY = "far-side-secret"


class FarBackend(Backend):
    """What the far server runs: a few quick steps of coloured frames and a tone; the prompt picks a misbehaviour."""

    name = "remote-test-far"
    description = "test: the far side's model"
    defaults = Defaults(width=64, height=64, fps=24, seconds=1.0, steps=10, guidance=3.0)
    size_multiple = 16
    frame_multiple = 8  # so the far side snaps 24 frames to 25, as LTX-2 does
    min_frames = 9
    seen: list = []
    cancelled = threading.Event()

    def status(self):
        return BackendStatus(True, "test")

    def generate(self, request, plan, *, progress, cancel):
        type(self).seen.append(request)
        slow = "slow" in request.prompt
        for step in range(400 if slow else plan.steps):
            if cancel.cancelled:
                type(self).cancelled.set()
            cancel.raise_if_cancelled()
            time.sleep(0.05 if slow else 0.02)
            progress(Progress(step=step + 1, total=400 if slow else plan.steps))
        if "fail" in request.prompt:
            raise KinemaError("the far model ran out of paint")
        count = 2 if "short" in request.prompt else plan.num_frames
        frames = np.full((count, plan.height, plan.width, 3), (200, 40, 40), np.uint8)
        rate = 16000
        seconds = count / plan.fps
        audio = (0.2 * np.sin(np.arange(int(rate * seconds)) / rate * 2 * np.pi * 440)).astype(np.float32)[None]
        return Clip(frames, Fraction(plan.fps), audio, rate, {})


class FarPlugin:
    __name__ = "test-remote-far"

    @kinema.hookimpl
    def register_backends(self, register):
        register(FarBackend())


class CorruptContent:
    """ASGI middleware: every /content answer's body is replaced by bytes that are no video."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].endswith("/content"):
            return await self.app(scope, receive, send)

        async def corrupting(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [(k, v) for k, v in message["headers"] if k != b"content-length"]}
            elif message["type"] == "http.response.body":
                message = {**message, "body": b"\x00not an mp4\x00" if message.get("body") else b""}
            await send(message)

        return await self.app(scope, receive, corrupting)


@pytest.fixture
def far_plugin():
    FarBackend.seen.clear()
    FarBackend.cancelled.clear()
    pm.register(FarPlugin(), name="test-remote-far")
    try:
        yield
    finally:
        pm.unregister(name="test-remote-far")


def start_far(tmp_path, *, corrupt=False):
    from kinema.server.app import create_app

    app = create_app(api_key=FAR_KEY, home=tmp_path / "far", videos_only=True, default_backend="remote-test-far")
    return ThreadServer(CorruptContent(app) if corrupt else app)


@pytest.fixture
def far(tmp_path, far_plugin):
    server = start_far(tmp_path)
    yield server
    server.stop()


def configure(kinema_env, monkeypatch, url, **settings):
    monkeypatch.setenv("FAR_KEY", FAR_KEY)
    entry = {
        "url": url + "/v1",
        "engine": "kinema",
        "model": "remote-test-far",
        "api_key_env": "FAR_KEY",
        "poll_seconds": 0.05,
        "defaults": {"width": 64, "height": 64, "fps": 24, "seconds": 1.0, "steps": 10, "guidance": 3.0},
        **settings,
    }
    (kinema_env / "remotes.json").write_text(json.dumps({"far": entry}))


def far_get(url, path):
    import httpx

    return httpx.get(url + path, headers={"Authorization": f"Bearer {FAR_KEY}"})


def test_generate_progress_and_provenance(far, kinema_env, monkeypatch, tmp_path):
    configure(kinema_env, monkeypatch, far.url)
    events: list[Progress] = []
    image = np.full((64, 64, 3), 90, np.uint8)
    request = kinema.GenerationRequest("a red ball", backend="remote:far", seconds=1.0, seed=7, image=image)
    clip = kinema.generate(request, progress=events.append)

    assert clip.frame_count == 25 and (clip.width, clip.height) == (64, 64)  # the far side's snap, as made
    assert clip.audio is not None
    far_request = FarBackend.seen[-1]
    assert far_request.seed == 7 and far_request.image is not None and far_request.fps == 24
    percents = [event.step for event in events]
    assert percents == sorted(percents) and percents[-1] == 100 and len(set(percents)) >= 3
    meta = clip.metadata
    assert meta["backend"] == "remote:far" and meta["model"] == "remote-test-far" and meta["num_frames"] == 25
    assert meta["remote"]["name"] == "far" and meta["remote"]["engine"] == "kinema"
    assert meta["remote"]["url"] == far.url
    video_id = meta["remote"]["video_id"]
    assert far_get(far.url, f"/v1/videos/{video_id}").status_code == 404  # kinema keeps its copy; far one removed

    from kinema.media.provenance import verify

    report = verify(clip.save(tmp_path / "remote.mp4")).to_dict()
    assert report["manifest"] == "valid"
    assert report["generation"]["remote"]["video_id"] == video_id and "remote:far" in report["generator"]


def test_far_failure_is_reported(far, kinema_env, monkeypatch):
    configure(kinema_env, monkeypatch, far.url)
    with pytest.raises(RemoteError, match=r"remote 'far' .* failed video video_\w+: the far model ran out of paint"):
        kinema.generate(kinema.GenerationRequest("please fail", backend="remote:far"))

    configure(kinema_env, monkeypatch, far.url, model="no-such-model")
    with pytest.raises(RemoteError, match=r"refused to create a video: HTTP 40\d: .*no-such-model"):
        kinema.generate(kinema.GenerationRequest("a red ball", backend="remote:far"))

    configure(kinema_env, monkeypatch, far.url)
    monkeypatch.setenv("FAR_KEY", "wrong")
    with pytest.raises(RemoteError, match=r"refused to create a video: HTTP 401"):
        kinema.generate(kinema.GenerationRequest("a red ball", backend="remote:far"))


def test_cancel_stops_the_far_job(far, kinema_env, monkeypatch):
    configure(kinema_env, monkeypatch, far.url)
    token = kinema.CancelToken()

    def on_progress(event):
        if event.step >= 2:
            token.cancel()

    started = time.monotonic()
    with pytest.raises(GenerationCancelled, match=r"remote 'far' stopped and deleted video video_\w+"):
        kinema.generate(kinema.GenerationRequest("slow", backend="remote:far"), progress=on_progress, cancel=token)
    assert time.monotonic() - started < 15  # the slow job would take 20 s
    assert FarBackend.cancelled.wait(10), "the far side's job was not cancelled"


def test_cancel_where_the_far_side_cannot(far, kinema_env, monkeypatch, tmp_path):
    """A far side without DELETE: the job is abandoned there and cancelled here, and kinema says so."""
    closed = ThreadServer(_no_delete(far))
    try:
        configure(kinema_env, monkeypatch, closed.url)
        token = kinema.CancelToken()
        with pytest.raises(GenerationCancelled, match=r"could not stop video .* abandoned there .*HTTP 405"):
            kinema.generate(
                kinema.GenerationRequest("slow", backend="remote:far"),
                progress=lambda e: token.cancel() if e.step >= 1 else None,
                cancel=token,
            )
    finally:
        closed.stop()


def _no_delete(far):
    """An ASGI app that proxies to ``far`` but answers DELETE with 405, as a server without it would."""
    import httpx

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["method"] == "DELETE":
            await send({"type": "http.response.start", "status": 405, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"Method Not Allowed"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        query = ("?" + scope["query_string"].decode()) if scope["query_string"] else ""
        async with httpx.AsyncClient() as client:
            answer = await client.request(
                scope["method"],
                far.url + scope["path"] + query,
                content=body,
                headers=[(k.decode(), v.decode()) for k, v in scope["headers"] if k != b"host"],
            )
        headers = [(k.encode(), v.encode()) for k, v in answer.headers.items() if k not in ("content-length",)]
        await send({"type": "http.response.start", "status": answer.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": answer.content})

    return app


def test_corrupt_or_short_clips_are_refused(far_plugin, kinema_env, monkeypatch, tmp_path):
    corrupt = start_far(tmp_path, corrupt=True)
    try:
        configure(kinema_env, monkeypatch, corrupt.url)
        with pytest.raises(RemoteError, match=r"returned video video_\w+ as a file that does not decode"):
            kinema.generate(kinema.GenerationRequest("a red ball", backend="remote:far"))
    finally:
        corrupt.stop()
    honest = start_far(tmp_path / "second")
    try:
        configure(kinema_env, monkeypatch, honest.url)
        with pytest.raises(RemoteError, match=r"lasting 0\.08 s \(2 frames at 24 fps\) where 1\.00 s was asked"):
            kinema.generate(kinema.GenerationRequest("short", backend="remote:far", seconds=1.0))
    finally:
        honest.stop()


def portrait_cameo(name="alice", owner="carol"):
    """A cameo from a made-up capture (one grey-blue portrait), verified: what remote use needs besides its owner's yes."""
    from cameo_helpers import mark_verified

    from kinema.cameo.capture import CaptureResult
    from kinema.cameo.store import CameoStore

    portrait = np.zeros((64, 64, 3), np.uint8)
    portrait[..., 2] = 180
    portrait[16:48, 16:48] = 120
    store = CameoStore()
    store.create(name, owner, CaptureResult(references=[portrait], faces=[portrait[:56, :56]]))
    mark_verified(name, store)
    return store, portrait


def test_voices_are_never_sent(kinema_env, monkeypatch):
    configure(kinema_env, monkeypatch, "http://127.0.0.1:9")
    portrait_cameo()
    for fields in (dict(speech="alice"), dict(dialogue="Hello there.")):
        request = kinema.GenerationRequest("alice waves", backend="remote:far", cameos=("alice",), **fields)
        with pytest.raises(InvalidRequestError, match="never sends a voice"):
            kinema.generate(request.with_(user="carol"))


def test_a_cameo_is_sent_only_with_its_owners_remote_permission(far, kinema_env, monkeypatch, tmp_path):
    from kinema.cameo.store import CameoNotAllowedError

    configure(kinema_env, monkeypatch, far.url)
    store, portrait = portrait_cameo()
    request = kinema.GenerationRequest("alice waves", backend="remote:far", cameos=("alice",), user="carol", seed=3)
    # A cameo from before the permission existed (no key in its record), its owner asking: not sent.
    with pytest.raises(CameoNotAllowedError, match="kinema cameo allow alice --remote") as refused:
        kinema.generate(request)
    assert refused.value.reason == "remote_not_allowed" and FarBackend.seen == []

    store.allow("alice", "carol", remote=True)
    clip = kinema.generate(request)
    sent = FarBackend.seen[-1].image  # what the far side got as its first frame: the portrait, as a lossless PNG
    assert np.array_equal(sent, portrait)
    assert clip.metadata["remote"]["cameos_sent"] == ["alice"] and clip.metadata["cameos"] == ["alice"]
    from kinema.media.provenance import verify

    report = verify(clip.save(tmp_path / "sent.mp4")).to_dict()
    assert report["generation"]["remote"]["cameos_sent"] == ["alice"]

    # Unverified again (re-captured without a challenge): never sent, whatever the record allows.
    store._update("alice", "carol", "test", {"verification": {"status": "unverified", "why": "test"}})
    with pytest.raises(CameoNotAllowedError, match="unverified") as refused:
        kinema.generate(request)
    assert refused.value.reason == "unverified"


def test_config_is_checked(kinema_env, monkeypatch):
    (kinema_env / "remotes.json").write_text(
        json.dumps(
            {
                "keyed": {"url": "http://gpu:8091", "api_key": "sk-123"},
                "nokey": {"url": "http://gpu:8091", "api_key_env": "NO_SUCH_VARIABLE_SET"},
                "fine": {"url": "https://gpu.example:8443/v1/", "engine": "vllm-omni", "model": "Wan-AI/Wan2.2"},
            }
        )
    )
    monkeypatch.delenv("NO_SUCH_VARIABLE_SET", raising=False)
    remotes = {r.name: r for r in load_remotes()}
    assert "holds an API key" in (remotes["keyed"].problem or "")
    assert remotes["fine"].url == "https://gpu.example:8443" and remotes["fine"].problem is None
    keyed = get_backend("remote:keyed")
    assert not keyed.status().ready
    with pytest.raises(InvalidRequestError, match="holds an API key"):
        keyed.plan(kinema.GenerationRequest("x", backend="remote:keyed"))
    assert "set NO_SUCH_VARIABLE_SET" in get_backend("remote:nokey").status().detail
    assert get_backend("remote:fine").status().ready and get_backend("remote:fine").status().device == "remote:fine"
    with pytest.raises(kinema.UnknownBackendError, match="remotes.json"):
        get_backend("remote:missing")


def test_the_server_runs_remote_jobs(far, kinema_env, monkeypatch, tmp_path):
    """A kinema server in front: model=remote:far runs on the far server, on a worker of its own."""
    from fastapi.testclient import TestClient
    from polling import wait_final

    from kinema.server.app import create_app

    configure(kinema_env, monkeypatch, far.url)
    with TestClient(create_app(api_key=None, home=tmp_path / "near"), base_url="http://127.0.0.1") as near:
        created = near.post("/v1/videos", json={"prompt": "a red ball", "model": "remote:far", "seconds": "1"})
        assert created.status_code == 200, created.text
        video = wait_final(near, created.json()["id"], timeout=60)
        assert video["status"] == "completed", video
        assert near.get(f"/v1/videos/{video['id']}/content").content[4:8] == b"ftyp"
