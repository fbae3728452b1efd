"""The published OpenAPI schema tells the truth: schemathesis, every check, against the server in this process.

``schemathesis run --checks all`` against a real ``kinema serve`` app served by uvicorn in a thread of the test
process: the coverage, fuzzing and stateful phases (the examples phase has nothing to run: the schema gives no
examples), at most ``MAX_EXAMPLES`` cases per operation and phase, generated deterministically (the same cases on
every run). Its job worker is paused, so jobs queue and nothing generates. What no JSON Schema can say (a real
picture, a storyboard's text, a face recording, a model's own limits) comes from tests/schema_hooks.py.
About 1.5-3 minutes on a 2-core machine.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

MAX_EXAMPLES = 20
PHASES = "coverage,fuzzing,stateful"

# The events of a job stream until it ends, and with the worker paused no job ends: read the first event (the job
# as it is) and go on.
CONFIG = """
max-stream-events = 1

[[operations]]
include-path = "/v1/videos/{video_id}/events"
request-timeout = 2.0
"""


@pytest.fixture
def served(kinema_env):
    """``kinema serve``'s app with its workers paused, on a free loopback port, in a thread."""
    import uvicorn

    from kinema.backends.tiny_parts import build_tiny
    from kinema.server.app import create_app

    target = kinema_env / "models" / "kinema--tiny-ltx2"
    if not (target / "model_index.json").is_file():
        build_tiny("ltx2", target)  # the default backend is ready, so valid requests queue jobs
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    app = create_app(api_key=None, start_workers=False)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "the server did not start"
        threading.Event().wait(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join()
    sock.close()


def test_schemathesis_all_checks_find_nothing(served, tmp_path):
    (tmp_path / "schemathesis.toml").write_text(CONFIG)
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "schema_hooks",
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
    }
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(tmp_path / "schemathesis.toml"),
        "run",
        f"{served}/openapi.json",
        "--checks",
        "all",
        "--phases",
        PHASES,
        "--max-examples",
        str(MAX_EXAMPLES),
        "--generation-deterministic",
        "--workers",
        "1",
        "--no-color",
        "--report-dir",
        str(tmp_path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    # Its report, with each request body cut short (a failing cameo upload's would be a whole recording).
    output = "\n".join(line[:2000] for line in (result.stdout + result.stderr).splitlines())
    assert result.returncode == 0, output
    counts = re.search(r"Test cases:\s+([0-9]+) generated, ([0-9]+) passed", output)
    assert counts and counts[1] == counts[2] and int(counts[1]) > 1000, output  # every case ran, none failed


def test_405_names_every_method_of_the_path(app_client):
    """A path that is a route of its own is not a value of another's parameter: GET /v1/videos/edits is 405 (POST
    only), not the video 'edits' not found; and Allow lists the methods of routes from included routers too."""
    for method, path, allow in [
        ("GET", "/v1/videos/edits", "POST"),
        ("DELETE", "/v1/videos/extensions", "POST"),
        ("PUT", "/v1/videos/video_" + "0" * 32, "DELETE, GET"),
        ("OPTIONS", "/v1/cameos/alice", "DELETE, GET"),
    ]:
        response = app_client.request(method, path)
        assert (response.status_code, response.headers.get("allow")) == (405, allow), (method, path)
    assert app_client.get("/v1/videos/nope").json()["error"]["message"] == "no video with id 'nope'"
