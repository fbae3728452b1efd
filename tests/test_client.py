"""kinema/client.py: standard library only, against a real server (uvicorn in a thread, or started by ensure_server)."""

from __future__ import annotations

import ast
import io
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from processes import wait_until_gone
from servers import ThreadServer

import kinema.client as client_module
from kinema.client import (
    BACKGROUND_NICE,
    APIError,
    AuthenticationError,
    Client,
    ClientError,
    JobCancelled,
    JobFailed,
    NotFoundError,
    ServerStartError,
    ServerUnavailable,
    WaitTimeout,
    ensure_server,
)

SMALL = {"size": "32x32", "seconds": 0.4, "steps": 2, "model": "tiny-ltx2"}  # random weights: any size
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def shared_home(tmp_path_factory) -> Path:
    """One data dir for the module, so the in-thread server's tiny model loads once."""
    home = tmp_path_factory.mktemp("client-home")
    root = tmp_path_factory.getbasetemp() / "shared-tiny-models"
    if not (root / "kinema--tiny-ltx2" / "model_index.json").is_file():
        from kinema.backends.tiny_parts import build_tiny

        build_tiny("ltx2", root / "kinema--tiny-ltx2")
    (home / "models").symlink_to(root, target_is_directory=True)
    return home


@pytest.fixture(autouse=True)
def _shared_home(kinema_env, shared_home, monkeypatch):
    monkeypatch.setenv("KINEMA_HOME", str(shared_home))


@pytest.fixture(scope="module")
def live(shared_home):
    from kinema.server.app import create_app

    os.environ["KINEMA_HOME"] = str(shared_home)  # module scope runs before the autouse fixture
    server = ThreadServer(create_app(api_key=None, home=shared_home))
    yield server
    server.stop()


@pytest.fixture
def client(live) -> Client:
    return Client(live.url)


def png(width=32, height=32) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 90, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


# --------------------------------------------------------------------------- shipping it


def test_client_imports_only_the_standard_library():
    path = Path(client_module.__file__)
    tree = ast.parse(path.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports: the file ships on its own"
            imported.add(node.module.split(".")[0])
    assert imported - {"__future__"} <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)
    # And it really runs alone: isolated mode, no site-packages, loaded as a lone file.
    code = (
        "import importlib.util, sys; spec = importlib.util.spec_from_file_location('kinema_client', sys.argv[1]);"
        " m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m);"
        " assert 'numpy' not in sys.modules and 'torch' not in sys.modules; print(m.Client('http://127.0.0.1:1'))"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code, str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "Client('http://127.0.0.1:1')" in result.stdout


def test_client_tiers_are_kinemas():
    """Hosts that copy the client (Blender, OBS) show its tier list: it must be kinema.tiers' own."""
    from kinema.tiers import DEFAULT_TIER, tier_names

    assert tier_names() == client_module.TIERS and client_module.DEFAULT_TIER == DEFAULT_TIER


def test_tiers_come_from_the_server_else_from_the_copy(client, monkeypatch):
    """Client.tiers(): the server's tier names and default (its OpenAPI schema), for hosts' tier menus; the copied
    list when the server is unreachable or too old to say."""
    from kinema.tiers import DEFAULT_TIER, TIERS

    copy = (client_module.TIERS, client_module.DEFAULT_TIER)
    monkeypatch.setattr(client_module, "TIERS", ("stale",))  # the server's answer wins over the copy
    monkeypatch.setattr(client_module, "DEFAULT_TIER", "stale")
    assert client.tiers() == (tuple(TIERS), DEFAULT_TIER)
    monkeypatch.undo()

    assert Client(f"http://127.0.0.1:{closed_port()}").tiers() == copy  # offline

    def old_server(method, path, body=None):  # answers, but names no tiers (a server from before them)
        return {"openapi": "3.1.0", "components": {"schemas": {"VideoCreateParams": {"properties": {}}}}}

    monkeypatch.setattr(client, "_json", old_server)
    assert client.tiers() == copy

    def no_schema(method, path, body=None):
        raise NotFoundError("Not Found", status=404)

    monkeypatch.setattr(client, "_json", no_schema)
    assert client.tiers() == copy


# --------------------------------------------------------------------------- errors


def test_connection_refused_is_server_unavailable():
    client = Client(f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(ServerUnavailable, match="kinema serve"):
        client.health()
    with pytest.raises(ServerUnavailable):
        client.submit("x")
    assert issubclass(ServerUnavailable, ClientError)


def test_bad_requests_and_missing_jobs(client):
    with pytest.raises(APIError) as caught:
        client.submit("x", size="8x8")
    assert caught.value.status == 400 and caught.value.param == "size" and "width" in str(caught.value)
    with pytest.raises(NotFoundError):
        client.get("video_" + "0" * 32)
    with pytest.raises(NotFoundError):
        client.get("../../etc/passwd")
    with pytest.raises(NotFoundError):
        client.wait("video_" + "0" * 32)


def test_auth_failure(shared_home):
    from kinema.server.app import create_app

    server = ThreadServer(create_app(api_key="right-key", home=shared_home / "keyed"))
    try:
        assert Client(server.url, api_key="right-key").list()["object"] == "list"
        with pytest.raises(AuthenticationError, match="KINEMA_API_KEY"):
            Client(server.url, api_key="wrong-key").list()
        with pytest.raises(AuthenticationError):
            Client(server.url, api_key="").submit("x")
    finally:
        server.stop()


# --------------------------------------------------------------------------- the happy path


def test_submit_wait_with_progress_and_download(client, tmp_path):
    from kinema.media.files import probe

    seen = []
    job = client.submit("a paper boat", **{**SMALL, "steps": 4}, seed=3, negative_prompt="blur")
    assert job["size"] == "32x32" and job["kinema"]["seed"] == 3
    final = client.wait(job["id"], progress=seen.append)
    assert final["status"] == "completed" and final["progress"] == 100
    assert [p.step for p in seen] == [1, 2, 3, 4] and all(p.total == 4 and p.job_id == job["id"] for p in seen)
    target = tmp_path / "boat.mp4"
    target.write_bytes(b"old contents")  # replaced atomically
    assert client.download(job["id"], target) == str(target)
    info = probe(target)
    assert info.frame_count == 9 and info.has_audio
    assert [p.name for p in tmp_path.iterdir()] == ["boat.mp4"]  # no temp file left behind
    thumbnail = client.download(job["id"], tmp_path / "boat.png", variant="thumbnail")
    assert Path(thumbnail).read_bytes().startswith(b"\x89PNG")


def test_generate_with_image(client, tmp_path):
    image = tmp_path / "first.png"
    image.write_bytes(png())
    path = client.generate("a grey card", tmp_path / "card.mp4", image=image, **SMALL, audio=False)
    assert Path(path).stat().st_size > 0
    job = client.list(limit=1)["data"][0]
    assert job["kinema"]["has_image"] and job["kinema"]["audio"] is False


def test_download_failure_leaves_nothing(client, tmp_path):
    job = client.submit("not yet", **{**SMALL, "steps": 300}, audio=False)
    try:
        with pytest.raises(APIError) as caught:
            client.download(job["id"], tmp_path / "early.mp4")
        assert caught.value.status == 409
        assert list(tmp_path.iterdir()) == []
    finally:
        client.cancel(job["id"])


def test_cancel_and_failure_raise(client):
    from kinema import KinemaError, hookimpl
    from kinema.backends.base import Backend, BackendStatus, Defaults
    from kinema.plugins import pm

    job = client.submit("long", **{**SMALL, "steps": 300}, audio=False)
    for name, _ in client.events(job["id"]):
        if name == "progress":
            break
    client.cancel(job["id"])
    with pytest.raises(JobCancelled) as caught:
        client.wait(job["id"])
    assert caught.value.code == "cancelled" and caught.value.job["id"] == job["id"]

    class Broken(Backend):
        name = "broken"
        description = "always fails"
        defaults = Defaults(width=16, height=16, fps=8, seconds=1, steps=1, guidance=1.0)
        size_multiple, frame_multiple, min_frames = 16, 1, 1

        def status(self):
            return BackendStatus(True, "ok", "cpu")

        def generate(self, request, plan, *, progress, cancel):
            raise KinemaError("the broken backend broke, as designed")

    class Plugin:
        __name__ = "test-broken"

        @hookimpl
        def register_backends(self, register):
            register(Broken())

    pm.register(Plugin(), name="test-broken")
    try:
        failed = client.submit("x", model="broken")
        with pytest.raises(JobFailed, match="broke, as designed") as caught:
            client.wait(failed["id"])
        assert not isinstance(caught.value, JobCancelled) and caught.value.code == "generation_failed"
    finally:
        pm.unregister(name="test-broken")


def test_wait_falls_back_to_polling_and_times_out(client, monkeypatch):
    def no_events(*args, **kwargs):
        raise APIError("Not Found", status=404)

    monkeypatch.setattr(client, "events", no_events)
    seen = []
    job = client.submit("polled", **{**SMALL, "steps": 40}, audio=False)
    assert client.wait(job["id"], progress=seen.append, poll_interval=0.02)["status"] == "completed"
    assert seen and all(p.preview_jpeg is None for p in seen)
    slow = client.submit("slow", **{**SMALL, "steps": 400}, audio=False)
    with pytest.raises(WaitTimeout):
        client.wait(slow["id"], timeout=0.2, poll_interval=0.02)
    client.cancel(slow["id"])


def test_events_snapshot_after_the_fact(client):
    job = client.submit("done", **SMALL)
    client.wait(job["id"])
    events = list(client.events(job["id"]))
    assert [name for name, _ in events] == ["video", "completed"]
    assert events[0][1]["id"] == job["id"]


def test_threads_share_a_client(client):
    results = []

    def one(i):
        job = client.submit(f"thread {i}", **SMALL, audio=False)
        results.append(client.wait(job["id"])["status"])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    [t.start() for t in threads]
    [t.join(120) for t in threads]
    assert results == ["completed"] * 6


# --------------------------------------------------------------------------- ensure_server


def test_ensure_server_uses_a_running_server(live):
    client = ensure_server(python="/nonexistent/python", url=live.url + "/v1")
    assert client.process is None and client.base_url == live.url


def test_ensure_server_explains_what_is_missing(monkeypatch, tmp_path):
    monkeypatch.delenv("KINEMA_PYTHON", raising=False)
    url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(ServerStartError, match="KINEMA_PYTHON"):
        ensure_server(url=url)
    with pytest.raises(ServerStartError, match="exited with code"):
        ensure_server(sys.executable, url=url, extra_args=("--no-such-option",), log_path=str(tmp_path / "log"))


def test_ensure_server_starts_kinema_serve(tmp_path, shared_home):
    env = {
        **os.environ,
        "KINEMA_HOME": str(tmp_path),
        "KINEMA_LOAD_PLUGINS": "",
        "KINEMA_DEVICE": "cpu",
        "OMP_NUM_THREADS": "1",
    }
    env.pop("KINEMA_API_KEY", None)
    (tmp_path / "models").symlink_to((shared_home / "models").resolve(), target_is_directory=True)
    client = ensure_server(
        sys.executable,
        url="http://127.0.0.1:0",
        env=env,
        api_key="started-key",
        log_path=str(tmp_path / "serve.log"),
        timeout=240,
    )
    try:
        assert client.process is not None and client.health()["auth"] is True
        path = client.generate("started on demand", tmp_path / "out.mp4", **SMALL)
        assert Path(path).stat().st_size > 0
        again = ensure_server(sys.executable, url=client.base_url, api_key="started-key")
        assert again.process is None  # already healthy: nothing new started
    finally:
        client.process.terminate()
        client.process.wait(20)


HOST_PROGRAM = """
import sys, time
from kinema.client import ensure_server
client = ensure_server(sys.executable, url="http://127.0.0.1:0", log_path=sys.argv[1], timeout=240,
                       stop_with_caller=True, background=True)
print(client.process.pid, client.base_url, flush=True)
time.sleep(600)
"""


def test_a_server_started_for_a_host_stops_when_the_host_is_killed(tmp_path):
    """A host that crashes runs no clean-up: the server notices its stdin pipe close and stops itself.

    Started in the background (as OBS starts it), the server runs below the host's CPU priority.
    """
    env = {**os.environ, "KINEMA_HOME": str(tmp_path), "KINEMA_LOAD_PLUGINS": "", "OMP_NUM_THREADS": "1"}
    log = tmp_path / "serve.log"
    host = subprocess.Popen([sys.executable, "-c", HOST_PROGRAM, str(log)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        pid, url = host.stdout.readline().split()
        server = int(pid)
        assert Client(url).health()["status"] == "ok"
        if os.name != "nt":
            assert os.getpriority(os.PRIO_PROCESS, server) == min(
                19, os.getpriority(os.PRIO_PROCESS, 0) + BACKGROUND_NICE
            )
    finally:
        host.kill()
        host.wait(10)
    wait_until_gone(server, 60, "the server the killed host started")
    assert "standard input closed" in log.read_text()
